"""``pubsub``: the command line. The site and the token come from ``--url``/``--token`` or the
environment (``PUBSUB_URL``, ``PUBSUB_TOKEN``).

    pubsub publish ROOM TEXT        post a message; prints it as JSON (its seq included)
    pubsub tail ROOM [--since N]    print the room's messages as they come (Ctrl-C ends)
    pubsub history ROOM [--after N | --before N] [--limit N]
    pubsub rooms
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from pubsub_client.client import Client
from pubsub_client.errors import ApiError, SubscriptionEnded
from pubsub_client.subscriber import Subscription


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pubsub", description="Publish to and read the rooms of a pubsub site.")
    parser.add_argument("--url", default=os.environ.get("PUBSUB_URL"), help="the site (env PUBSUB_URL)")
    parser.add_argument("--token", default=os.environ.get("PUBSUB_TOKEN"), help="an API token (env PUBSUB_TOKEN)")
    commands = parser.add_subparsers(dest="command", required=True)

    publish = commands.add_parser("publish", help="post a message")
    publish.add_argument("room")
    publish.add_argument("text", help="the message; '-' reads it from standard input")
    publish.add_argument("--reply-to", type=int)
    publish.add_argument("--idempotency-key", help="the same key again never posts twice")

    tail = commands.add_parser("tail", help="print the room's messages as they come")
    tail.add_argument("room")
    tail.add_argument("--since", type=int, help="start after this seq (default: new messages only)")
    tail.add_argument("--json", action="store_true", help="one JSON frame a line")

    history = commands.add_parser("history", help="print a page of the room's history")
    history.add_argument("room")
    group = history.add_mutually_exclusive_group()
    group.add_argument("--after", type=int)
    group.add_argument("--before", type=int)
    history.add_argument("--limit", type=int)
    history.add_argument("--json", action="store_true")

    commands.add_parser("rooms", help="list the rooms the token may read")
    return parser


def _line(message: dict) -> str:
    body = "(deleted)" if message.get("deleted") else message.get("body", "")
    return f"#{message['seq']} {message['author']['username']}: {body}"


async def _tail(client: Client, room: str, since: int | None, as_json: bool) -> None:
    async for frame in Subscription(client, room, since=since):
        print(json.dumps(frame) if as_json else _line(frame), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.url or not args.token:
        parser.error("give the site and a token: --url and --token, or PUBSUB_URL and PUBSUB_TOKEN")
    client = Client(args.url, args.token)
    try:
        if args.command == "publish":
            text = sys.stdin.read() if args.text == "-" else args.text
            message = client.publish(args.room, text, reply_to=args.reply_to, idempotency_key=args.idempotency_key)
            print(json.dumps(message))
        elif args.command == "tail":
            asyncio.run(_tail(client, args.room, args.since, args.json))
        elif args.command == "history":
            page = client.history(args.room, after=args.after, before=args.before, limit=args.limit)
            for message in page["messages"]:
                print(json.dumps(message) if args.json else _line(message))
        elif args.command == "rooms":
            for room in client.rooms():
                print(f"{room['slug']}\t{room['kind']}\t{room['seq']}\t{room['name']}")
    except ApiError as error:
        print(f"pubsub: {error}", file=sys.stderr)
        return 1
    except SubscriptionEnded as ended:
        print(f"pubsub: the subscription ended: {ended}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
