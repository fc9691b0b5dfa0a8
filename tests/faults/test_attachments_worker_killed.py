"""Uploads and sends while the worker is SIGKILLed, twice, with the files on S3 (SeaweedFS).

Four people each upload files (over HTTP, to the web process), send messages naming them,
leave some uploads unsent and delete some messages, while the worker, which persists the
messages, links their attachments and removes the deleted ones' files, is killed twice and
started again. Then the periodic cleanup runs (as cron would, with every unsent upload
taken as stale). What must hold: every acked message's files are linked to its row, in the
bucket and served to a reader (no message pointing at a missing object), and the bucket
holds nothing else (no orphan object: not a deleted message's, not an unsent upload's)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import pytest

from attachments.models import Attachment
from attachments.services import attachments_cleanup
from messaging.models import Message
from rooms.services import room_create, room_join
from tests.faults.kit import base_env, chaos_row, report
from tests.http_upload import get, upload_file
from tests.netclient import NetClient, session_key_for
from tests.seaweedfs import start_s3_server

pytestmark = pytest.mark.processes

PEOPLE = 4
MESSAGES_EACH = 8


def wait_for(predicate, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.1)
    return value


def test_uploads_while_the_worker_is_killed_leave_no_orphan_object_and_no_message_without_its_file(
    make_cluster, make_user, alice, settings, tmp_path
):
    s3 = start_s3_server(tmp_path / "seaweedfs")
    try:
        settings.STORAGES = {**settings.STORAGES, "attachments": s3.storage_settings()}
        cluster = make_cluster(base_env(**s3.env()))
        port = cluster.start_web()
        cluster.start_worker()
        room = room_create(creator=alice, name="Files under fire")
        people = [make_user(f"sender{i}") for i in range(PEOPLE)]
        for person in people:
            room_join(room=room, user=person)
        keys = [session_key_for(p) for p in people]
        rng = random.Random(24)
        acked: dict[str, dict] = {}  # client_id -> {"seq", "files": {id: bytes}, "deleted"}
        unsent: list[str] = []
        kills = []

        async def person(key: str, index: int) -> None:
            client = await NetClient.open(port, key)
            await client.subscribe(room.slug)
            for n in range(MESSAGES_EACH):
                data = f"file {index}/{n} ".encode() * rng.randint(1, 400)
                status, wire = await asyncio.to_thread(upload_file, port, key, room.slug, f"f{index}-{n}.txt", data)
                assert status == 201, wire
                if n % 4 == 3:
                    unsent.append(wire["id"])  # uploaded, never sent
                    continue
                client_id = str(uuid.uuid4())
                await client.send(
                    {
                        "type": "send",
                        "room": room.slug,
                        "body": f"m{index}/{n}",
                        "client_id": client_id,
                        "attachments": [wire["id"]],
                    }
                )
                await client.collect(lambda c, cid=client_id: any(a["client_id"] == cid for a in c.of_type("ack")))
                seq = next(a["seq"] for a in client.of_type("ack") if a["client_id"] == client_id)
                acked[client_id] = {"seq": seq, "files": {wire["id"]: data}, "deleted": False}
                if n % 5 == 4:
                    await client.send({"type": "delete", "room": room.slug, "seq": seq})
                    await client.recv_type("message_deleted")
                    acked[client_id]["deleted"] = True
                await asyncio.sleep(rng.random() / 20)
            await client.close()

        async def killer() -> None:
            for _ in range(2):
                await asyncio.sleep(1.5)
                (worker,) = cluster.workers
                await asyncio.to_thread(cluster.kill_worker, worker)
                kills.append(time.monotonic())
                await asyncio.sleep(0.5)
                cluster.start_worker()

        async def scenario() -> None:
            await asyncio.gather(*(person(k, i) for i, k in enumerate(keys)), killer())

        load_started = time.monotonic()
        asyncio.run(scenario())
        started = time.monotonic()
        assert len(kills) == 2 and kills[-1] < started - 0.5, "both kills must land during the load"
        live = {cid: m for cid, m in acked.items() if not m["deleted"]}
        wanted = {fid for m in live.values() for fid in m["files"]}
        wait_for(
            lambda: Attachment.objects.filter(id__in=wanted, message__isnull=False).count() == len(wanted),
            "every sent file linked to its message",
        )
        settings.ATTACHMENT_UNCLAIMED_HOURS = -1  # the cron run, as if a day had passed
        attachments_cleanup()
        recovery = time.monotonic() - started

        stored = Message.objects.filter(room=room, client_id__in=list(acked)).count()
        rows = {str(a.id): a for a in Attachment.objects.filter(room=room).select_related("message")}
        bucket = s3.keys()
        missing = []  # acked, not deleted, and a file not linked, not in the bucket or not served
        reader = session_key_for(alice)
        for client_id, sent in live.items():
            for file_id, data in sent["files"].items():
                row = rows[file_id]
                # Redirected to the presigned URL, followed to SeaweedFS.
                status, served, _ = get(port, reader, f"/attachments/{file_id}/x")
                linked = row.message is not None and str(row.message.client_id) == client_id
                if not (linked and row.storage_key in bucket and served == data):
                    missing.append((file_id, linked, row.storage_key in bucket, status))
        live_keys = {a.storage_key for a in rows.values() if a.deleted_at is None}
        orphans = bucket - live_keys
        gone = [fid for fid in unsent if rows[fid].deleted_at is None or rows[fid].storage_key in bucket]
        deleted_served = [
            fid
            for m in acked.values()
            if m["deleted"]
            for fid in m["files"]
            if get(port, reader, f"/attachments/{fid}/x")[0] != 404
        ]
        report(
            "uploads and sends while the worker is SIGKILLed twice (S3 on SeaweedFS)",
            f"{len(acked)} messages with a file acked ({len(acked) - len(live)} then deleted), "
            f"{len(unsent)} uploads never sent, in {started - load_started:.1f} s with the worker killed at "
            f"{kills[0] - load_started:.1f} s and {kills[1] - load_started:.1f} s; {stored} messages in PostgreSQL",
            f"{len(bucket)} objects left in the bucket, {len(orphans)} orphans; "
            f"{len(missing)} messages without their file; everything linked and cleaned "
            f"{recovery:.1f} s after the load ended",
        )
        chaos_row(
            "uploads while the worker is SIGKILLed twice (S3): files lost / orphan objects",
            acked=len(acked),
            stored=stored,
            delivered=None,
            lost=len(missing) + len(orphans),
            duplicated=0,
            recovery=recovery,
        )
        assert not missing, missing
        assert not orphans, orphans
        assert not gone, gone
        assert not deleted_served, deleted_served
        assert stored == len(acked)
        assert bucket == live_keys and len(live_keys) == len(wanted)
    finally:
        s3.stop()
