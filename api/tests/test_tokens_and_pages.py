"""Tokens, bots and incoming webhooks: made on their pages, shown once, stored hashed, revoked;
and who may make them."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.utils import timezone
from openapi_spec_validator import validate

from api.models import ApiToken, BotAccount, IncomingWebhook
from api.services import bot_create, token_create, token_revoke
from api.tokens import atoken_grant, secret_hash, token_grant
from rooms.models import Membership

pytestmark = pytest.mark.django_db

SECRET = re.compile(r"psk_[A-Za-z0-9_-]{43}")


def test_a_token_is_shown_once_and_only_its_hash_is_kept(client, alice, public_room):
    client.force_login(alice)
    response = client.post(
        "/accounts/tokens/", {"name": "ci", "can_read": "on", "can_publish": "on", "rooms": [public_room.pk]}
    )
    assert response.status_code == 201
    secret = SECRET.search(response.content.decode()).group()
    token = ApiToken.objects.get(user=alice)
    assert token.hash == secret_hash(secret) and secret not in {token.prefix, token.hash}
    assert secret.startswith(token.prefix)
    again = client.get("/accounts/tokens/").content.decode()
    assert secret not in again and token.prefix in again
    grant = token_grant(secret)
    assert grant.user_id == alice.pk and grant.scopes == {"read", "publish"}
    assert grant.room_slugs == {public_room.slug} and not grant.bot


def test_a_token_needs_a_scope(client, alice):
    client.force_login(alice)
    response = client.post("/accounts/tokens/", {"name": "nothing"})
    assert response.status_code == 400 and not ApiToken.objects.exists()


def test_a_revoked_or_expired_token_or_one_of_an_inactive_user_grants_nothing(alice, bob):
    revoked = token_create(user=alice, name="old")
    token_revoke(token=revoked.obj)
    expired = token_create(user=alice, name="gone", expires_at=revoked.obj.created_at)
    inactive = token_create(user=bob, name="bob")
    get_user_model().objects.filter(pk=bob.pk).update(is_active=False)
    for made in (revoked, expired, inactive):
        assert token_grant(made.secret) is None
    assert token_grant("psk_" + "a" * 43) is None and token_grant("not a token") is None


@pytest.mark.django_db(transaction=True)  # atoken_grant's thread hop (SQLite) closes old connections
def test_a_bots_token_grants_the_same_from_sync_and_async_code(alice, public_room):
    """One statement reads a token on every database: in Django's thread (SQLite, sync
    callers) and on PostgreSQL's loop (api.tokens.atoken_grant); both grant alike."""
    bot = bot_create(room=public_room, created_by=alice, username="deploybot")
    made = token_create(
        user=bot.user, name="ci", can_read=False, expires_at=timezone.now() + timedelta(days=1), rooms=[public_room]
    )
    everywhere = token_create(user=alice, name="all")
    grant = token_grant(made.secret)
    assert grant.bot and grant.username == "deploybot" and grant.user_id == bot.user_id
    assert grant.scopes == {"publish"} and grant.room_slugs == {public_room.slug}
    assert async_to_sync(atoken_grant)(made.secret) == grant
    assert token_grant(everywhere.secret).room_slugs is None and not token_grant(everywhere.secret).bot
    assert async_to_sync(atoken_grant)(everywhere.secret) == token_grant(everywhere.secret)


def test_a_token_records_its_last_use_at_most_once_a_minute(alice):
    made = token_create(user=alice, name="ci")
    token_grant(made.secret)
    first = ApiToken.objects.get().last_used_at
    token_grant(made.secret)
    assert first is not None and ApiToken.objects.get().last_used_at == first


def test_someone_cannot_revoke_another_users_token(client, alice, bob):
    made = token_create(user=alice, name="alice's")
    client.force_login(bob)
    assert client.post(f"/accounts/tokens/{made.obj.pk}/revoke/").status_code == 404
    client.force_login(alice)
    assert client.post(f"/accounts/tokens/{made.obj.pk}/revoke/").status_code == 302
    assert token_grant(made.secret) is None


def test_an_outsider_or_a_plain_member_cannot_open_a_rooms_bots_page(client, bob, make_user, private_room, public_room):
    client.force_login(make_user("carol"))
    assert client.get(f"/rooms/{private_room.slug}/integrations/").status_code == 404
    client.force_login(bob)
    assert client.get(f"/rooms/{private_room.slug}/integrations/").status_code == 403
    response = client.post(f"/rooms/{private_room.slug}/integrations/bots/", {"username": "sneaky"})
    assert response.status_code == 403 and not BotAccount.objects.exists()


def test_a_room_admin_makes_a_bot_its_token_and_a_webhook_each_secret_shown_once(client, alice, public_room):
    client.force_login(alice)
    base = f"/rooms/{public_room.slug}/integrations/"
    assert client.post(f"{base}bots/", {"username": "deploys"}).status_code == 302
    bot = BotAccount.objects.get()
    assert not bot.user.has_usable_password()
    assert Membership.objects.get(user=bot.user, room=public_room).role == Membership.Role.MEMBER
    response = client.post(f"{base}bots/{bot.user_id}/tokens/", {"name": "ci", "can_read": "on", "can_publish": "on"})
    assert response.status_code == 201
    secret = SECRET.search(response.content.decode()).group()
    grant = token_grant(secret)
    assert grant.bot and grant.user_id == bot.user_id and grant.room_slugs == {public_room.slug}
    response = client.post(f"{base}webhooks/", {"name": "GitHub", "bot": bot.pk})
    assert response.status_code == 201
    url = re.search(r"http://testserver/api/v1/hooks/(whk_[A-Za-z0-9_-]{43})", response.content.decode())
    hook = IncomingWebhook.objects.get()
    assert hook.hash == secret_hash(url.group(1)) and url.group(1) not in client.get(base).content.decode()
    assert client.post(f"{base}webhooks/{hook.pk}/revoke/").status_code == 302
    assert IncomingWebhook.objects.get().revoked_at is not None


def test_a_bots_name_must_be_free(alice, public_room):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        bot_create(room=public_room, created_by=alice, username="ALICE")


def test_a_bot_and_its_badge_show_in_the_member_list(client, alice, public_room):
    bot_create(room=public_room, created_by=alice, username="helper")
    client.force_login(alice)
    page = client.get(public_room.get_absolute_url()).content.decode()
    item = re.search(r'<li class="members__item"[^>]*data-username="helper".*?</li>', page, re.S).group()
    assert "badge--bot" in item


def test_the_openapi_schema_validates_and_documents_every_route(client):
    response = client.get("/api/v1/schema")
    assert response.status_code == 200
    schema = response.json()
    validate(schema)
    paths = schema["paths"]
    assert {
        "/api/v1/rooms",
        "/api/v1/rooms/{slug}/messages",
        "/api/v1/messages/batch",
        "/api/v1/rooms/{slug}/messages/{seq}",
        "/api/v1/rooms/{slug}/messages/{seq}/claps",
        "/api/v1/hooks/{secret}",
    } <= set(paths)
    assert schema["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"


def test_the_docs_page_loads_its_scripts_from_the_site_not_a_cdn(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    page = response.content.decode()
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', page)
    assert scripts and all(src.startswith("/static/") for src in scripts)
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]


def test_a_token_made_in_the_admin_is_shown_once_and_revoked_there(client, alice, bob):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    client.force_login(alice)
    response = client.post(
        "/admin/api/apitoken/add/",
        {"user": bob.pk, "name": "from the admin", "can_read": "on", "all_rooms": "on"},
        follow=True,
    )
    assert response.status_code == 200
    secret = SECRET.search(response.content.decode()).group()
    token = ApiToken.objects.get(user=bob)
    assert token.hash == secret_hash(secret) and token_grant(secret).scopes == {"read"}
    client.post("/admin/api/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    assert token_grant(secret) is None
