# pgvault: API and workers in one image (Debian bookworm slim, Python 3.11, PostgreSQL 15 client
# tools for pg_dump / pg_restore).
#   docker build -t pgvault .
#   docker run -d -p 8443:8443 -v pgvault:/var/lib/pgvault \
#     -e PGVAULT_DATABASE_URL=postgresql://... -e PGVAULT_MASTER_KEY=... \
#     -v /etc/pgvault/tls:/tls:ro -e PGVAULT_TLS_CERT=/tls/pgvault.crt -e PGVAULT_TLS_KEY=/tls/pgvault.key \
#     pgvault serve --host 0.0.0.0 --port 8443
#   docker run -d ... pgvault worker        # any number, on any machine
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PGVAULT_HOME=/var/lib/pgvault \
    PGVAULT_LOG_FORMAT=json \
    PGVAULT_PG_BINDIR=/usr/lib/postgresql/15/bin

# pg_dump / pg_restore 15 (bookworm's own PostgreSQL), CA certificates for S3 / Azure / TLS
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system pgvault \
 && useradd --system --gid pgvault --home-dir /var/lib/pgvault --shell /usr/sbin/nologin pgvault \
 && install -d -o pgvault -g pgvault -m 0700 /var/lib/pgvault

WORKDIR /opt/pgvault
COPY pyproject.toml README.md ./
COPY pgvault ./pgvault
RUN pip install . && rm -rf /root/.cache

USER pgvault
VOLUME ["/var/lib/pgvault"]
EXPOSE 8443
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request,ssl,os;s='https' if os.environ.get('PGVAULT_TLS_CERT') else 'http';urllib.request.urlopen(f'{s}://127.0.0.1:8443/healthz',context=ssl._create_unverified_context(),timeout=4)" || exit 1
ENTRYPOINT ["pgvault"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8443"]
