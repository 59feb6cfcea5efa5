# One image for every Modelyard process; docker-compose.yml and k8s/ pick the command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY shared shared
COPY services services
COPY workers workers
COPY migrations migrations
RUN pip install --no-cache-dir . && useradd --create-home modelyard && mkdir -p /data && chown modelyard /data
USER modelyard
ENV MODELYARD_ENV=production MODELYARD_VAR_DIR=/data
EXPOSE 8000
