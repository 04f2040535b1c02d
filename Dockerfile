# The kunjung app image: gunicorn with the options scripts/serve uses (server/gunicorn_conf.py); the store is
# configured by KUNJUNG_DATABASE_URL.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/kunjung
COPY pyproject.toml setup.cfg README.md ./
COPY server ./server
COPY sync ./sync
COPY forms ./forms
RUN pip install . && useradd --system --home /var/lib/kunjung kunjung \
    && mkdir -p /var/lib/kunjung && chown kunjung /var/lib/kunjung
USER kunjung
ENV KUNJUNG_HOST=0.0.0.0 KUNJUNG_WORKERS=4
EXPOSE 8000
CMD ["sh", "-c", "kunjung init && exec gunicorn -c python:server.gunicorn_conf"]
