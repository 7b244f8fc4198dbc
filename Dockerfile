# chinwag in a container (docs/operations.md, "Running in a container"):
#   docker build -t chinwag .
#   docker run -d --name chinwag -p 5222:5222 -p 5223:5223 -p 5280:5280 \
#     -v chinwag-data:/var/lib/chinwag -v ./chinwag.toml:/etc/chinwag/chinwag.toml:ro chinwag
# Commands run in it as the same user: docker exec -it chinwag chinwag user add alice
#
# It builds on Debian's own Python (3.11); where no registry serves debian:bookworm-slim,
# deploy/compose/debian-base.sh makes it from Debian's archive.

FROM debian:bookworm-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/chinwag
WORKDIR /src
COPY pyproject.toml README.md ./
# The dependencies first, with an empty package in chinwag's place: a change to the code
# alone then rebuilds from the next step, without fetching them again.
RUN mkdir chinwag && touch chinwag/__init__.py \
    && /opt/chinwag/bin/pip install --no-cache-dir --disable-pip-version-check '.[hiredis]' \
    && rm -r chinwag build chinwag.egg-info
COPY chinwag ./chinwag
RUN /opt/chinwag/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps \
        --force-reinstall . \
    && find /opt/chinwag -name __pycache__ -prune -exec rm -rf {} +

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --home-dir /var/lib/chinwag --shell /usr/sbin/nologin chinwag \
    && install -d -o chinwag -g chinwag -m 0700 /var/lib/chinwag
COPY --from=build /opt/chinwag /opt/chinwag
COPY contrib/docker/chinwag.toml /etc/chinwag/chinwag.toml
ENV PATH=/opt/chinwag/bin:$PATH \
    CHINWAG_CONFIG=/etc/chinwag/chinwag.toml \
    PYTHONUNBUFFERED=1
USER chinwag
WORKDIR /var/lib/chinwag
VOLUME ["/var/lib/chinwag"]
# XMPP with STARTTLS, XMPP with direct TLS (XEP-0368), the web listener.
EXPOSE 5222 5223 5280
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5280/health', timeout=4)"]
CMD ["chinwag", "serve"]
