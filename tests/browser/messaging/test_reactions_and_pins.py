"""Emoji reactions and pins in two browsers: a reaction picked in the picker (searched, then
from the recent ones) shows live to the other person with who reacted; a pin shows live in
the other person's pinned list, and survives a reload."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.axe import audit, failing, report
from tests.browser.kit import message, say

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def test_a_reaction_is_seen_live_by_the_other_person_with_who_reacted(site, alice, bob, lobby):
    alice_page = site.page_for(alice, lobby.get_absolute_url())
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    for page in (alice_page, bob_page):
        expect(page.locator("#connection")).to_have_text("connected")
    say(alice_page, "Lunch at noon?")
    expect(message(bob_page, "Lunch at noon?")).to_be_visible()

    # Bob searches the picker with the keyboard and picks with Enter.
    bob_message = message(bob_page, "Lunch at noon?")
    bob_message.hover()
    bob_message.locator("[data-action=react-open]").click()
    picker = bob_page.locator("#emoji-picker")
    expect(picker).to_be_visible()
    expect(bob_page.locator("#emoji-search")).to_be_focused()
    bob_page.locator("#emoji-search").fill("party popper")
    expect(picker.locator("#emoji-all .emoji-picker__emoji").first).to_have_attribute("aria-label", "party popper")
    bob_page.locator("#emoji-search").press("Enter")
    expect(picker).to_be_hidden()

    chip = message(alice_page, "Lunch at noon?").locator(".reaction[data-emoji='🎉']")
    expect(chip).to_have_text("🎉 1")
    expect(chip).to_have_attribute("title", "bob reacted with 🎉")
    expect(chip).to_have_attribute("aria-pressed", "false")
    bob_chip = message(bob_page, "Lunch at noon?").locator(".reaction[data-emoji='🎉']")
    expect(bob_chip).to_have_attribute("aria-pressed", "true")

    # Alice adds hers by the chip, with the keyboard: both see two, and who.
    chip.focus()
    chip.press("Enter")
    expect(bob_chip).to_have_text("🎉 2")
    expect(bob_chip).to_have_attribute("title", "bob, alice reacted with 🎉")
    # The picker remembers bob's pick among the recent ones.
    bob_message.hover()
    bob_message.locator("[data-action=react-open]").click()
    expect(bob_page.locator("#emoji-recent .emoji-picker__emoji").first).to_have_text("🎉")
    expect(bob_page.locator("#emoji-all .emoji-picker__emoji").first).to_be_visible()
    violations = audit(bob_page)  # the picker open over chips: axe's serious or critical findings fail
    assert not failing(violations), report("room with reactions, picker open", violations)
    bob_page.keyboard.press("Escape")
    expect(bob_message.locator("[data-action=react-open]")).to_be_focused()  # back where it opened
    # Bob takes his off: alice sees one again.
    bob_chip.click()
    expect(chip).to_have_text("🎉 1")
    expect(chip).to_have_attribute("title", "alice reacted with 🎉")
    # A reload shows them as they are.
    alice_page.reload()
    chip = message(alice_page, "Lunch at noon?").locator(".reaction[data-emoji='🎉']")
    expect(chip).to_have_text("🎉 1")
    expect(chip).to_have_attribute("aria-pressed", "true")


def test_a_pin_is_seen_live_in_the_other_persons_pinned_list(site, alice, bob, lobby):
    alice_page = site.page_for(alice, lobby.get_absolute_url())
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    for page in (alice_page, bob_page):
        expect(page.locator("#connection")).to_have_text("connected")
    say(bob_page, "The meeting notes are in the wiki")
    expect(message(alice_page, "The meeting notes are in the wiki")).to_be_visible()
    expect(bob_page.locator("#pins-empty")).to_be_visible()
    # Bob, a member, is offered no pin.
    expect(message(bob_page, "The meeting notes").locator("[data-action=pin]")).to_have_count(0)

    target = message(alice_page, "The meeting notes are in the wiki")
    target.hover()
    target.locator("[data-action=pin]").click()
    pinned = bob_page.locator("#pins .pins__item")
    expect(pinned).to_have_count(1)
    expect(pinned.locator(".pins__excerpt")).to_have_text("The meeting notes are in the wiki")
    expect(pinned.locator(".pins__by")).to_have_text("pinned by alice")
    expect(bob_page.locator("#pins-empty")).to_be_hidden()
    expect(message(bob_page, "The meeting notes").locator(".message__pinned")).to_be_visible()
    expect(target.locator("[data-action=pin]")).to_have_text("Unpin")
    bob_page.reload()
    expect(bob_page.locator("#pins .pins__item .pins__excerpt")).to_have_text("The meeting notes are in the wiki")
    violations = audit(alice_page)
    assert not failing(violations), report("room with a pinned message", violations)

    # Unpinned from alice's side panel: gone from bob's list live.
    alice_page.locator("#pins [data-action=unpin]").click()
    expect(bob_page.locator("#pins .pins__item")).to_have_count(0)
    expect(bob_page.locator("#pins-empty")).to_be_visible()
