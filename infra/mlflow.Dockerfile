# syntax=docker/dockerfile:1
# MLflow tracking server for infra/docker-compose.yml. The stock image has neither the PostgreSQL
# driver (backend store) nor boto3 (S3/MinIO artifact store); add both, nothing else.
ARG MLFLOW_VERSION=3.17.2
FROM ghcr.io/mlflow/mlflow:v${MLFLOW_VERSION}
RUN pip install --no-cache-dir "psycopg2-binary>=2.9,<3" "boto3>=1.34,<2"
