"""The API server, within pods' reach: a TCP relay from a real node's address to loopback.

The API server listens on 127.0.0.1 only (nothing off the machine should reach it), and an
Endpoints object may not name a loopback address, so pods could not reach it through the
``kubernetes`` Service. This relay listens on a real node's address (which pods reach through
their bridge, and which nothing off the machine routes to) and passes each connection, TLS and
all, to the API server on loopback; the Service network points the ``kubernetes`` Endpoints at
it. ``python -m localcluster.relay --listen IP:PORT --to IP:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

CHUNK = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


def _handler(host: str, port: int):
    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter):
        try:
            server_reader, server_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), timeout=5
            )
        except (OSError, TimeoutError) as error:
            print(f"cannot reach {host}:{port}: {error}", file=sys.stderr, flush=True)
            client_writer.close()
            return
        await asyncio.gather(
            _pipe(client_reader, server_writer), _pipe(server_reader, client_writer)
        )

    return relay


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def serve(listen: tuple[str, int], target: tuple[str, int]) -> None:
    server = await asyncio.start_server(_handler(*target), *listen)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    print(f"relaying {listen[0]}:{listen[1]} to {target[0]}:{target[1]}", flush=True)
    async with server:
        await stopping.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localcluster.relay", description=__doc__)
    parser.add_argument("--listen", type=_address, required=True)
    parser.add_argument("--to", type=_address, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.listen, args.to))


if __name__ == "__main__":
    main()
