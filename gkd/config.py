"""One pydantic model per stage, one YAML per experiment (`jobs/configs/*.yaml`).

Unknown keys and bad values are rejected with the dotted key path and the reason.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gkd.errors import ConfigError

DEFAULT_APT_LISTS = "/var/lib/apt/lists"
_RUNTIME = {"runtime": True}


def runtime(default: Any = ..., **kw: Any) -> Any:
    """A field that changes how a stage runs (workers, actors, devices, inference batch sizes, checkpoint
    cadence), not what it writes: left out of `content_hash`, so changing it reuses finished stages."""
    return Field(default, json_schema_extra=_RUNTIME, **kw)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ----------------------------------------------------------------------------- sources


class ByoSource(Strict):
    """Bring-your-own folder: nodes.parquet (node_id, text, label, [split]) + edges.parquet (src, dst)."""

    kind: Literal["byo"] = "byo"
    path: Path
    directed: bool = False


class DebianSource(Strict):
    """apt's package index: Packages (nodes, Depends/Pre-Depends/Recommends edges, Section labels)."""

    kind: Literal["debian"] = "debian"
    lists_dir: Path = Path(DEFAULT_APT_LISTS)
    # A package's text: "name: short description" then the long one (Translation-en); or "long" (the
    # long description alone), or "short+long".
    text: Literal["name+short+long", "long", "short+long"] = "name+short+long"
    edge_fields: list[Literal["Depends", "Pre-Depends", "Recommends", "Suggests"]] = [
        "Depends",
        "Pre-Depends",
        "Recommends",
    ]
    # Sections with fewer packages become label -1 (unlabeled), so every class can be learnt.
    min_class_size: int = Field(60, ge=1)
    # Node budget for tests and quick demos. None = all packages.
    max_nodes: int | None = Field(None, ge=1)
    # How a budget picks packages: the first N by name, or "snowball": packages in a seeded random order,
    # each followed by everything it depends on (breadth-first), until N — an installed system's worth
    # of packages whose dependency edges stay inside the sample.
    sample: Literal["name", "snowball"] = "name"
    sample_seed: int = 0


class SyntheticSource(Strict):
    """Seeded stochastic-block TAG with class-bound vocabulary, generated shard-parallel on Ray Data."""

    kind: Literal["synthetic"] = "synthetic"
    num_nodes: int = Field(10_000, ge=2)
    num_edges: int = Field(100_000, ge=1)
    num_classes: int = Field(10, ge=2)
    # Probability that an edge's far end is drawn from the near end's class.
    homophily: float = Field(0.8, ge=0.0, le=1.0)
    # Degree skew: far ends are drawn with probability ~ rank^-degree_skew (0 = uniform).
    degree_skew: float = Field(0.5, ge=0.0, le=2.0)
    words_per_node: int = Field(24, ge=1)
    vocab_size: int = Field(5_000, ge=100)
    # Fraction of a node's words drawn from its class vocabulary (the rest are background words).
    class_word_fraction: float = Field(0.3, ge=0.0, le=1.0)
    num_shards: int = Field(8, ge=1)
    seed: int = 0


class OgbnProductsSource(Strict):
    """OGB raw ogbn-products (csv.gz) + Amazon-3M trn.json/tst.json joined through nodeidx2asin."""

    kind: Literal["ogbn-products"] = "ogbn-products"
    root: Path  # the folder holding raw/, split/, mapping/
    amazon_dir: Path | None = None  # holds trn.json(.gz), tst.json(.gz); default <root>/Amazon-3M.raw


class OgbnArxivSource(Strict):
    """OGB raw ogbn-arxiv (csv.gz) + titleabs.tsv(.gz) (a gzipped tar, see FORMATS.md)."""

    kind: Literal["ogbn-arxiv"] = "ogbn-arxiv"
    root: Path
    titleabs: Path | None = None  # default <root>/titleabs.tsv.gz or <root>/titleabs.tsv


class CoraSource(Strict):
    """TAPE's raw-text Cora: cora.content, cora.cites, mccallum/cora/{papers,extractions/}."""

    kind: Literal["cora"] = "cora"
    root: Path


class PubmedSource(Strict):
    """TAPE's raw-text PubMed: data/Pubmed-Diabetes.{NODE.paper,DIRECTED.cites}.tab + pubmed.json."""

    kind: Literal["pubmed"] = "pubmed"
    root: Path


SourceConfig = Annotated[
    Union[
        ByoSource,
        DebianSource,
        SyntheticSource,
        OgbnProductsSource,
        OgbnArxivSource,
        CoraSource,
        PubmedSource,
    ],
    Field(discriminator="kind"),
]
SOURCE_KINDS = ["byo", "debian", "synthetic", "ogbn-products", "ogbn-arxiv", "cora", "pubmed"]


# ----------------------------------------------------------------------------- ingest


class SplitConfig(Strict):
    """How splits are drawn for labelled nodes that have none (sources without official splits).

    Per class (low-label regime, e.g. 20 train labels per class) or by fractions; the rest of the
    labelled nodes go to test, a share of which is then held out of the graph (holdout_fraction).
    """

    train_per_class: int | None = Field(20, ge=1)
    val_per_class: int | None = Field(30, ge=0)
    train_fraction: float | None = Field(None, gt=0.0, lt=1.0)
    val_fraction: float | None = Field(None, ge=0.0, lt=1.0)
    seed: int = 0
    # Inductive evaluation: round(holdout_fraction * T) of the T labelled test nodes (drawn or given, any
    # source; seeded by `seed`) become split "holdout": no edge in csr.npz, their edges into the graph in
    # holdout_edges.npz, to be classified as new nodes (text + neighbours). 0 = none.
    holdout_fraction: float = Field(0.1, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _one_mode(self) -> "SplitConfig":
        if self.train_fraction is not None:
            if self.val_fraction is None:
                raise ValueError("train_fraction needs val_fraction too")
            if self.train_fraction + self.val_fraction >= 1.0:
                raise ValueError("train_fraction + val_fraction must be below 1 (the rest is test)")
        elif self.train_per_class is None:
            raise ValueError("set train_per_class (and val_per_class) or train_fraction/val_fraction")
        return self

    @property
    def per_class(self) -> bool:
        return self.train_fraction is None


class EncoderConfig(Strict):
    """Node-text encoder: 'minilm' (embedded all-MiniLM-L6-v2), 'hashing', or a sentence-transformers path/id."""

    name: str = "minilm"
    dim: int = Field(256, ge=8)  # only for 'hashing'; models report their own width
    max_seq_length: int = Field(128, ge=8)  # tokens seen by a model encoder
    batch_size: int = runtime(256, ge=1)
    num_actors: int = runtime(2, ge=1)
    num_cpus_per_actor: float = runtime(1.0, gt=0)
    num_gpus_per_actor: float = runtime(0.0, ge=0)
    device: str = runtime("auto")  # auto | cpu | cuda | cuda:N
    torch_threads: int | None = runtime(1, ge=1)  # per actor; None = torch's default
    dtype: Literal["float32", "float16"] = "float32"
    # Content-hash cache of embeddings (resume + reuse); None = <workdir>/../.cache/features
    cache_dir: Path | None = runtime(None)
    cache: bool = runtime(True)


class PartitionConfig(Strict):
    """Optional METIS partition (pymetis); node shards then follow partition order."""

    enabled: bool = False
    num_parts: int = Field(8, ge=2)
    seed: int = 0


class IngestConfig(Strict):
    source: SourceConfig = Field(default_factory=DebianSource)
    split: SplitConfig = Field(default_factory=SplitConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    partition: PartitionConfig = Field(default_factory=PartitionConfig)
    num_shards: int = Field(8, ge=1)  # node and edge Parquet shards
    max_text_chars: int = Field(2000, ge=16)  # texts are cut here before storage and encoding
    overwrite: bool = runtime(False)  # replace a store ingested with another config


# ----------------------------------------------------------------------------- teacher side


class LLMConfig(Strict):
    """The teacher LLM: the embedded SmolLM2-135M-Instruct, or any Hugging Face id / local dir."""

    model: str = "smollm2-135m-instruct"  # embedded alias, HF id, or local directory
    cache_dir: Path | None = runtime(None)  # where the embedded model is unpacked; None = $GKD_CACHE_DIR/models
    dtype: Literal["float32", "bfloat16"] = "float32"  # never fp16 on CPU
    device: str = runtime("auto")  # auto | cpu | cuda | cuda:N
    torch_threads: int | None = runtime(1, ge=1)  # per actor / worker when several share a node


class PromptConfig(Strict):
    """Node-classification prompts: node text + sampled k-hop neighbour texts, within a token budget."""

    hops: int = Field(2, ge=0, le=4)  # K: prompts hold hops 0..K; teacher features F_0..F_K
    neighbors_per_hop: int = Field(4, ge=0)  # sampled neighbours shown per hop
    max_tokens: int = Field(320, ge=32)  # whole prompt
    node_tokens: int = Field(96, ge=8)  # the node's own text
    neighbor_tokens: int = Field(32, ge=4)  # each neighbour's text
    seed: int = 0


class RationaleConfig(Strict):
    """Pan et al. rationales streamed through LLM actors (Ray Data)."""

    unlabeled_budget: int = Field(200, ge=0)  # nodes beyond the labelled train/val ones
    # how those are chosen: where a first vanilla student is least certain, class-balanced by its predicted
    # class, spread over `regions` hub neighbourhoods (gkd.llm.budget); or uniformly at random
    selector: Literal["uncertain", "random"] = "uncertain"
    regions: int = Field(32, ge=1)
    splits: list[Literal["train", "val", "test", "unlabeled"]] = ["train", "val"]  # always covered
    batch_size: int = runtime(8, ge=1)
    num_actors: int = runtime(2, ge=1)
    num_cpus_per_actor: float = runtime(1.0, gt=0)
    num_gpus_per_actor: float = runtime(0.0, ge=0)
    generate: bool = True  # also generate keywords / key neighbours / reason (JSON)
    max_new_tokens: int = Field(96, ge=8)
    seed: int = 0


class TeacherConfig(Strict):
    """LinguGKD instruction tuning on Ray Train + DeepSpeed, then per-hop teacher features."""

    finetune: Literal["lora", "full"] = "lora"
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_targets: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    zero_stage: Literal[0, 1, 2, 3] = 2
    num_workers: int = Field(2, ge=1)  # content: the global batch is batch_size x num_workers
    use_gpu: bool = runtime(False)
    num_cpus_per_worker: float = runtime(1.0, gt=0)
    # names: tune the LM to answer the class name, score every name as a continuation; head: LoRA + a linear
    # head on the last token's hidden state (prompts without the class list); auto: tune both, keep the better
    # on val
    scoring: Literal["names", "head", "auto"] = "head"
    lora_layers: int | None = Field(None, ge=1)  # LoRA on the top layers only (None: all); shorter backward
    epochs: int = Field(3, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(4, ge=1)  # per worker
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(2e-4, gt=0)
    head_lr: float | None = Field(2e-3, gt=0)  # the new classification head's learning rate (None: lr)
    lr_schedule: Literal["constant", "cosine", "linear"] = "cosine"
    warmup_ratio: float = Field(0.1, ge=0, lt=1)  # of all optimizer steps
    weight_decay: float = Field(0.0, ge=0)
    val_budget: int = Field(200, ge=0)  # val nodes scored after every epoch (accuracy, calibration); 0: none
    keep: Literal["best_val", "last"] = "best_val"  # which epoch's checkpoint becomes the teacher
    max_failures: int = runtime(1, ge=0)
    checkpoint_every: int = runtime(50, ge=1)  # optimizer steps
    train_budget: int | None = Field(None, ge=1)  # training prompts (None = every train node)
    eval_budget: int = Field(300, ge=1)  # test nodes scored for zero-shot / tuned accuracy
    feature_dim: int | None = Field(None, ge=8)  # project per-hop features (large teachers)
    # per-hop features F_0..F_K: one_pass reads each at the end of its hop's section of the one K-hop prompt
    # (causal attention: that token sees the node and hops <= k); three_pass runs one prompt per hop
    readout: Literal["one_pass", "three_pass"] = "one_pass"
    zero_shot: bool = True  # also score the untuned model on the eval nodes (a baseline for the tuning)
    # tune on a label-rate split (as distill.labels_per_class / label_pool_per_class / label_seed), so that the
    # teacher sees exactly the labels its students see; None = the graph's own train split
    labels_per_class: int | None = Field(None, ge=1)
    label_pool_per_class: int | None = Field(None, ge=1)
    label_seed: int = 0
    seed: int = 0

    @model_validator(mode="after")
    def _label_rate(self):
        if self.label_pool_per_class is not None and (self.labels_per_class is None
                                                      or self.label_pool_per_class < self.labels_per_class):
            raise ValueError("teacher.label_pool_per_class needs labels_per_class and must be at least it")
        return self


class PanConfig(Strict):
    """Pan et al.: interpreter on rationale-augmented inputs, then student alignment to it."""

    key_edge_repeat: int = Field(2, ge=1)  # messages from key neighbours count this many times
    fallback_key_neighbors: int = Field(2, ge=0)  # when the LLM names none: most keyword-similar neighbours
    interpreter_epochs: int | None = Field(None, ge=1)  # None = distill.epochs
    output_weight: float = Field(1.0, ge=0)  # MSE student vs interpreter output distributions
    semantic_weight: float = Field(1.0, ge=0)  # feature alignment on the most keyword-shifted nodes
    structural_weight: float = Field(1.0, ge=0)  # feature alignment on the most re-weighted neighbourhoods
    top_fraction: float = Field(0.2, gt=0, le=1)  # share of rationale nodes in each alignment set
    soft_weight: float = Field(1.0, ge=0)  # interpreter: KL to LLM soft labels


class DistillConfig(Strict):
    """Student stage: neighbour-sampled GNN distillation on Ray Train (DDP)."""

    # sign: precomputed [x, Āx, .., Ā^K x] (K = num_layers) with a branch per hop; no neighbour sampling
    gnn: Literal["gcn", "sage", "gat", "gin", "sign"] = "sage"
    method: Literal["vanilla", "kd", "lingugkd", "pan", "all"] = "all"
    hidden: int = Field(128, ge=4)
    num_layers: int = Field(2, ge=1, le=6)
    root_weight: bool = True  # GCN: a separate weight for the node's own features
    # message-passing students: the head reads [x W_0, h_1, .., h_L] (jumping knowledge), not h_L alone
    jk: bool = False
    dropout: float = Field(0.5, ge=0, lt=1)
    heads: int = Field(4, ge=1)  # GAT only
    fanouts: list[int] = [15, 10]  # per layer, -1 = all neighbours
    batch_size: int = Field(256, ge=1)  # seed nodes per worker and step
    epochs: int = Field(100, ge=1)
    patience: int = Field(20, ge=1)  # early stopping on validation accuracy
    lr: float = Field(5e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    # classic KD / pseudo labels
    kd_temperature: float = Field(2.0, gt=0)
    kd_weight: float = Field(1.0, ge=0)
    pseudo_threshold: float = Field(0.7, gt=0, le=1)
    pseudo_weight: float = Field(0.5, ge=0)
    # teacher targets: calibrated = each node's KD / pseudo-label weight is the teacher's precision at its
    # confidence, measured on val nodes (teacher/calibration.json); targets below precision_floor are dropped
    # (counted); LinguGKD's negatives come from gold labels or targets with precision >= negative_precision
    teacher_weighting: Literal["calibrated", "uniform"] = "calibrated"
    precision_floor: float = Field(0.5, ge=0, le=1)
    negative_precision: float = Field(0.8, ge=0, le=1)
    unlabeled_seeds: int = Field(2048, ge=0)  # extra random seed nodes for losses defined on every node
    # LinguGKD
    nce_temperature: float = Field(0.07, gt=0)
    # CE/distill mix: uncertainty = learnable log-variance weights (stable); softmax = the LinguGKD
    # reference's learnable softmax (can switch CE off); fixed = 0.5/0.5
    mix: Literal["uncertainty", "softmax", "fixed"] = "uncertainty"
    pan: PanConfig = Field(default_factory=PanConfig)
    # Ray Train
    num_workers: int = Field(2, ge=1)  # content: each rank draws its own seed shard
    use_gpu: bool = runtime(False)
    num_cpus_per_worker: float = runtime(1.0, gt=0)
    torch_threads: int | None = runtime(1, ge=1)
    max_failures: int = runtime(2, ge=0)
    checkpoint_every: int = runtime(5, ge=1)  # epochs between checkpoints (= Ray Train reports); the last always
    device: str = runtime("auto")  # driver-side full-graph inference: auto | cpu | cuda | cuda:N
    infer_batch_size: int = runtime(4096, ge=1)
    # Pan's interpreter: None = <student dir>/interpreter; students of other methods may share one (the bench)
    interpreter_dir: Path | None = runtime(None)
    seed: int = 0
    # label-rate sweeps: train on the first k labels of each class (its train nodes, then test nodes, in a
    # seeded order); label_pool_per_class >= k takes that many out of test at every k, so that every rate
    # of a sweep is scored on the same test nodes. None = the graph's own train split.
    labels_per_class: int | None = Field(None, ge=1)
    label_pool_per_class: int | None = Field(None, ge=1)
    label_seed: int | None = None  # the seed of that label draw (None: `seed`); a teacher tuned on it uses the same

    @model_validator(mode="after")
    def _label_rate(self):
        if self.label_pool_per_class is not None:
            if self.labels_per_class is None:
                raise ValueError("label_pool_per_class needs labels_per_class")
            if self.label_pool_per_class < self.labels_per_class:
                raise ValueError(f"label_pool_per_class ({self.label_pool_per_class}) must be at least "
                                 f"labels_per_class ({self.labels_per_class})")
        return self

    @model_validator(mode="after")
    def _fanouts_match_layers(self):
        if len(self.fanouts) != self.num_layers:
            raise ValueError(f"fanouts has {len(self.fanouts)} entries but num_layers={self.num_layers}; "
                             "give one fan-out per layer")
        if any(f == 0 or f < -1 for f in self.fanouts):
            raise ValueError(f"fanouts must be positive or -1 (all neighbours), got {self.fanouts}")
        return self


class RefineConfig(Strict):
    """Refinement after distillation (gkd.gnn.refine), every choice made on validation nodes only:
    temperature scaling, the unlabeled nodes' class prior (EM or BBSE) and a prior correction, Correct &
    Smooth over the graph; then GLNN: the refined predictions distilled back into the inductive student."""

    enabled: bool = True
    # the prior's estimator: a fixed default, not chosen per graph (val cannot choose it: see the README)
    prior: Literal["em", "bbse", "none"] = "bbse"
    # Correct & Smooth propagation strengths tried (0 = that step off); the best on prior-reweighted val acc wins
    correct_alphas: list[float] = [0.0, 0.8]
    smooth_alphas: list[float] = [0.0, 0.8, 0.95]
    # new nodes: weights tried for the mean refined prediction of their known neighbours (chosen on val)
    new_node_alphas: list[float] = [0.0, 0.25, 0.5, 0.75, 0.9]
    iterations: int = Field(50, ge=1)
    # GLNN: a student trained on CE (train labels) + class-balanced KL to the refined predictions
    glnn: bool = True
    glnn_weight: float = Field(0.5, ge=0, le=1)  # share of the KL term (1 - this: cross-entropy on labels)
    glnn_nodes: int | None = Field(16384, ge=1)  # refined nodes seen per epoch (a seeded draw per epoch); None = all
    glnn_epochs: int | None = Field(None, ge=1)  # None = distill.epochs

    @model_validator(mode="after")
    def _alphas(self):
        for name in ("correct_alphas", "smooth_alphas", "new_node_alphas"):
            values = getattr(self, name)
            if not values or any(not 0 <= a < 1 for a in values):
                raise ValueError(f"{name} must be a non-empty list of values in [0, 1), got {values}")
        return self


class RayConfig(Strict):
    """Where to run: address None joins RAY_ADDRESS if set, else starts a local cluster of its own
    ("auto" joins a `ray start` cluster running on this machine)."""

    address: str | None = None
    num_cpus: int | None = Field(None, ge=1)  # local cluster only
    object_store_memory_gib: float | None = Field(None, gt=0)  # local cluster only
    # a local cluster of its own listens on loopback only (GCS, raylet, workers, agents); false: on the
    # machine's address, so that other machines can join it (`ray start --address`)
    local_loopback: bool = True


# ----------------------------------------------------------------------------- serving


class CascadeConfig(Strict):
    """Student answers below a confidence threshold are re-asked of the teacher LLM (its own deployment)."""

    enabled: bool = False
    threshold: float = Field(0.5, gt=0, le=1)  # student confidence below this -> teacher; 1.0 = every answer
    model: str | None = None  # None = the tuned teacher at <workdir>/teacher/checkpoint if present, else llm.model
    num_replicas: int = Field(1, ge=1)
    num_cpus_per_replica: float = Field(1.0, ge=0)
    num_gpus_per_replica: float = Field(0.0, ge=0)
    max_ongoing_requests: int = Field(16, ge=1)
    max_batch_size: int = Field(8, ge=1)  # nodes per teacher forward (@serve.batch)
    batch_wait_timeout_s: float = Field(0.01, ge=0)

    @model_validator(mode="after")
    def _batch_fits(self):
        if self.max_batch_size > self.max_ongoing_requests:
            raise ValueError(f"max_batch_size={self.max_batch_size} exceeds max_ongoing_requests="
                             f"{self.max_ongoing_requests}: a batch could never fill; raise max_ongoing_requests")
        return self


class ServeConfig(Strict):
    """`gkd serve`: the student from the MLflow registry (or a checkpoint dir) behind Ray Serve."""

    model: str | None = None  # registered model name; None = <name>-student
    alias: str = Field("champion", min_length=1)
    checkpoint: Path | None = None  # serve this student checkpoint dir directly, no registry
    app_name: str = Field("gkd-student", pattern=r"^[A-Za-z0-9_.-]+$")
    host: str = Field("127.0.0.1", min_length=1)  # 0.0.0.0 exposes the API to the network
    port: int = Field(8000, ge=1, le=65535)
    route_prefix: str = "/"
    # haproxy: Ray's HAProxy ingress + RAY_SERVE_THROUGHPUT_OPTIMIZED (direct ingress to the replica);
    # proxy: Ray's classic Python proxy actor. Applied when this process starts the Serve controller.
    ingress: Literal["haproxy", "proxy"] = "haproxy"
    # HAProxy's stats page and Prometheus metrics (ports of their own): Ray's template binds them to every
    # interface; a local `gkd serve` binds them here instead (set 0.0.0.0 for a scraper on another machine)
    side_host: str = Field("127.0.0.1", min_length=1)
    env: dict[str, str] = {}  # extra RAY_SERVE_* variables for the Serve controller, proxies and replicas
    num_replicas: int = Field(1, ge=1)
    num_cpus_per_replica: float = Field(1.0, ge=0)
    num_gpus_per_replica: float = Field(0.0, ge=0)
    start_attempts: int = Field(3, ge=1)  # local `gkd serve`: Serve start-ups tried before a clear error
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    torch_threads: int | None = Field(1, ge=1)  # per replica; None = torch's default
    infer_batch_size: int = Field(4096, ge=1)  # start-up layer-wise inference over all nodes
    max_ongoing_requests: int = Field(64, ge=1)  # per replica
    # @serve.batch around the model call: off; new_nodes (requests with new nodes: one encoder + GNN pass per
    # batch, known nodes answered from the cache at once); all (every request waits for its batch)
    batching: Literal["off", "new_nodes", "all"] = "new_nodes"
    max_batch_size: int = Field(32, ge=1)  # requests per batched model call
    batch_wait_timeout_s: float = Field(0.002, ge=0)
    max_nodes_per_request: int = Field(256, ge=1)  # node ids + keys + new nodes; more -> 413
    max_neighbors_per_node: int = Field(1024, ge=0)  # a new node's neighbour list; more -> 413
    max_text_chars: int = Field(20_000, ge=1)  # a new node's text; longer -> 413 (ingest.max_text_chars cuts it after)
    top_k: int = Field(5, ge=1)  # class probabilities returned per node unless the request says otherwise
    token_env: str | None = "GKD_SERVE_TOKEN"  # bearer token read from this variable; unset or empty = no auth
    access_log: bool = False  # Ray Serve's per-request access log (costs throughput)
    cascade: CascadeConfig = Field(default_factory=CascadeConfig)

    @model_validator(mode="after")
    def _consistent(self):
        if not self.route_prefix.startswith("/"):
            raise ValueError(f"route_prefix must start with '/', got {self.route_prefix!r}")
        if self.batching != "off" and self.max_batch_size > self.max_ongoing_requests:
            raise ValueError(f"max_batch_size={self.max_batch_size} exceeds max_ongoing_requests="
                             f"{self.max_ongoing_requests}: a batch could never fill; raise max_ongoing_requests")
        bad = [k for k in self.env if not k.startswith("RAY_SERVE_")]
        if bad:
            raise ValueError(f"env takes RAY_SERVE_* variables only, got {bad}")
        return self


class ExperimentConfig(Strict):
    name: str = Field("gkd", pattern=r"^[A-Za-z0-9_.-]+$")
    workdir: Path = Path("runs/gkd")
    # per stage name: write its outputs here instead of <workdir>/<the stage's folder> (e.g. many students)
    stage_dirs: dict[str, Path] = runtime({})
    ray: RayConfig = Field(default_factory=RayConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    rationale: RationaleConfig = Field(default_factory=RationaleConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    refine: RefineConfig = Field(default_factory=RefineConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @model_validator(mode="after")
    def _known_stage_dirs(self):
        from gkd.stages import stage_names

        unknown = sorted(set(self.stage_dirs) - set(stage_names()))
        if unknown:
            raise ValueError(f"stage_dirs names unknown stage(s) {unknown}; stages are {', '.join(stage_names())}")
        return self

    def stage_dir(self, stage) -> Path:
        """Where `stage` (a name or a Stage record) reads and writes its files."""
        from gkd.stages import stage_record

        rec = stage_record(stage)
        return Path(self.stage_dirs[rec.name]) if rec.name in self.stage_dirs else self.workdir / rec.dir

    @property
    def graph_dir(self) -> Path:
        return self.stage_dir("ingest")


# ----------------------------------------------------------------------------- what counts as the same work


def content(value: Any) -> Any:
    """A config value as plain JSON, without its runtime fields (recursively)."""
    if isinstance(value, BaseModel):
        return {k: content(getattr(value, k)) for k, f in type(value).model_fields.items()
                if not (isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("runtime"))}
    if isinstance(value, (list, tuple)):
        return [content(v) for v in value]
    if isinstance(value, dict):
        return {str(k): content(v) for k, v in value.items()}
    return str(value) if isinstance(value, Path) else value


def section(cfg: BaseModel, path: str) -> Any:
    """A config section by its dotted path, e.g. "ingest.encoder"."""
    value = cfg
    for part in path.split("."):
        value = getattr(value, part)
    return value


def content_hash(cfg: ExperimentConfig, stage) -> str:
    """The one notion of "same work": a hash of the stage's config sections without their runtime fields,
    and of the content hashes of the stages it reads. Equal hash = its outputs can be reused."""
    from gkd.stages import stage_record

    rec = stage_record(stage)
    body = {"stage": rec.name, "config": {s: content(section(cfg, s)) for s in rec.sections},
            "inputs": {s: content_hash(cfg, s) for s in rec.inputs}, "extra": content(rec.extra)}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- loading


def format_validation_error(err: ValidationError, where: str) -> str:
    lines = [f"invalid config {where}:"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"] if not _is_union_tag(p)) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (remove it or check its spelling)"
        lines.append(f"  {path}: {msg}")
    return "\n".join(lines)


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the discriminator value (e.g. 'debian') into loc for tagged unions
    return isinstance(part, str) and part in SOURCE_KINDS


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        child = node.get(k)
        if child is None:
            child = node[k] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {k} is not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """'a.b=3' -> ('a.b', 3); the value is parsed as YAML (numbers, bools, lists, null)."""
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        out.append((key.strip(), yaml.safe_load(raw)))
    return out


def build_config(data: dict | None, where: str = "", overrides: list[tuple[str, Any]] = ()) -> ExperimentConfig:
    data = dict(data or {})
    for key, value in overrides:
        _set_dotted(data, key, value)
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, where or "(from code)")) from None


def read_config_dict(path: str | Path) -> dict:
    """The raw mapping in a YAML config file (validated later by build_config)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"config file {path} is not UTF-8 text (line {line}: {err.reason}); save it as UTF-8") from None
    try:
        duplicate = _duplicate_key(yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if duplicate:
        key, first, again = duplicate
        raise ConfigError(f"config file {path}: {key}: key given twice (lines {first} and {again}); keep one")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _duplicate_key(node, path: tuple = (), seen: set | None = None) -> tuple[str, int, int] | None:
    """(dotted key, first line, repeated line) of the first key a YAML mapping gives twice (PyYAML keeps the
    last one silently), or None."""
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:  # an alias is checked where its anchor is
        return None
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            tagged = (key.tag, name)  # 1 and "1" are different keys
            if name is not None and tagged in lines:
                return ".".join((*path, name)), lines[tagged], key.start_mark.line + 1
            lines[tagged] = key.start_mark.line + 1
            found = _duplicate_key(value, (*path, str(name)), seen)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_key(item, (*path, str(i)), seen)
            if found:
                return found
    return None


def load_config(path: str | Path | None, overrides: list[tuple[str, Any]] = ()) -> ExperimentConfig:
    """Read one experiment YAML (None = embedded defaults) and apply dotted overrides."""
    if path is None:
        return build_config({}, "(defaults)", overrides)
    return build_config(read_config_dict(path), str(path), overrides)
