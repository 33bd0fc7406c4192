"""``moodsong serve``: the page and the HTTP API (FastAPI under uvicorn)."""

from __future__ import annotations

import re

import click

from moodsong.cli.group import main

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class ByteSize(click.ParamType):
    """A size in bytes, written ``500M``, ``2G``, ``1.5G`` or a plain number of bytes; ``0`` means no limit."""

    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(value), re.IGNORECASE)
        if not m:
            self.fail(f"{value!r} is not a size (e.g. 500M, 2G)", param, ctx)
        return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 lets anyone on the network in.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="TCP port.")
@click.option("--results", "results_dir", type=click.Path(file_okay=False),
              help="Folder for results (one sub-folder per request); default: a fresh temporary folder.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Composer processes (pieces composed at once; each needs ~0.5 GB of memory).")
@click.option("--rate-limit", type=click.FloatRange(0), default=12.0, show_default=True,
              help="Compose requests per minute per client address (0: no limit).")
@click.option("--api-rate-limit", type=click.FloatRange(0), default=1200.0, show_default=True,
              help="All API requests (status polls, downloads) per minute per client address (0: no limit).")
@click.option("--max-age", type=click.FloatRange(10), default=3600.0, show_default=True,
              help="Seconds a result stays downloadable.")
@click.option("--max-queue", type=click.IntRange(1), default=64, show_default=True,
              help="Requests queued or composing at once; more are turned away (503).")
@click.option("--max-pending", type=click.IntRange(0), default=4, show_default=True,
              help="Requests one client address may have queued or composing at once (0: no own limit).")
@click.option("--max-disk", type=ByteSize(), default="2G", show_default=True,
              help="Disk budget of all results (e.g. 500M, 2G; 0: none); the oldest results go first when full.")
@click.option("--job-timeout", type=click.FloatRange(5), default=180.0, show_default=True,
              help="Longest one composition may run, in seconds.")
@click.option("--cors-origin", "cors_origins", multiple=True,
              help="Allow pages on this origin (e.g. https://example.org) to call the API; repeatable. Default: none.")
@click.option("--allowed-host", "allowed_hosts", multiple=True,
              help="Also answer to this host name (e.g. music.example.org behind a proxy); repeatable; '*' for any. "
                   "Default: localhost, 127.0.0.1, ::1 and --host (with 0.0.0.0: any IP address and this "
                   "machine's names).")
@click.option("--model",
              help="song (default: plan, melody, accompaniment), emotion-wavenet or emotion-crbm (the earlier "
                   "piano models), or a checkpoint path (a song model from train-song, or an emotion-conditional "
                   "model).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True, help="Server log detail.")
def serve(host, port, results_dir, workers, rate_limit, api_rate_limit, max_age, max_queue, max_pending, max_disk,
          job_timeout, cors_origins, allowed_hosts, model, log_level):
    """Serve the moodsong page and API: say or type a feeling in a browser, get a piece.

    The page is at http://HOST:PORT/ (works offline, phones included), the API
    schema at /openapi.json, and composing at POST /api/compose (JSON) or
    POST /api/compose/voice (a WAV recording). Results live under random IDs
    and expire after --max-age seconds (or earlier when --max-disk is full).

    There is no authentication: serve a local network, or put it behind a
    reverse proxy that authenticates (see docs/web.md, "Security model").

    Browsers open the microphone only on https:// or localhost pages; over
    plain http on a network the page offers a file upload instead.

    \b
    Examples:
      moodsong serve                                  # http://127.0.0.1:8000/
      moodsong serve --host 0.0.0.0 --port 8080       # for everyone on the network
      moodsong serve --workers 2 --results /srv/moodsong --max-age 600
      curl -s -X POST localhost:8000/api/compose -H 'Content-Type: application/json' \\
           -d '{"prompt": "a calm evening by the sea", "bars": 8}'
    """
    import uvicorn

    from moodsong.web import create_app

    app = create_app(results_dir=results_dir, workers=workers, rate_limit=rate_limit, api_rate_limit=api_rate_limit,
                     max_age_s=max_age, max_queue=max_queue, max_pending_per_client=max_pending,
                     max_disk_bytes=max_disk, job_timeout_s=job_timeout, cors_origins=list(cors_origins),
                     allowed_hosts=list(allowed_hosts), host=host, model=model)
    click.echo(f"moodsong: results in {app.state.results_dir}; page at http://{host}:{port}/", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=5,
                limit_concurrency=1000, server_header=False)
