"""``nanotoll provider show``: what the registries and the registration file say about
one agent, as a plain dict (``--json``) or text. The file is read but not required: an
unreachable or malformed one is reported in place of the endpoints."""

from __future__ import annotations

from typing import Any

from web3 import Web3

from .errors import IdentityError
from .fetch import fetch_document
from .reference import AgentReference
from .registration import parse_registration
from .registry import IdentityRegistryClient, ReputationRegistryClient


def provider_report(w3: Web3, reference: AgentReference,
                    reputation: str | None) -> dict[str, Any]:
    registry = IdentityRegistryClient(w3, reference.registry)
    registry.check_deployed()
    uri = registry.agent_uri(reference.agent_id)
    report: dict[str, Any] = {
        "agent": str(reference), "agent_id": reference.agent_id,
        "owner": registry.owner_of(reference.agent_id),
        "wallet": registry.agent_wallet(reference.agent_id), "agent_uri": uri,
        "file": None, "file_error": None, "feedback": None,
    }
    try:
        registration = parse_registration(fetch_document(uri))
    except IdentityError as exc:
        report["file_error"] = str(exc)
    else:
        report["file"] = {
            "name": registration.name, "description": registration.description,
            "broker": registration.broker_url, "catalog_topic": registration.catalog_topic,
            "protocol_version": registration.protocol_version,
            "provider": registration.provider, "escrow": registration.escrow,
            "chain_id": registration.chain_id,
            "products": {p.name: p.unit_price for p in registration.products},
            "lists_this_agent": reference.agent_id in registration.registered_as(
                reference.chain_id, reference.registry),
        }
        reputation = reputation or registration.reputation_registry or None
    if reputation:
        client = ReputationRegistryClient(w3, reputation)
        summary = client.summary(reference.agent_id)
        report["feedback"] = {
            "registry": client.address, "count": summary.count, "value": summary.value,
            "decimals": summary.decimals,
            "items": [{"client": f.client, "index": f.index, "value": f.value,
                       "decimals": f.decimals, "tag1": f.tag1, "tag2": f.tag2,
                       "revoked": f.revoked} for f in client.feedback(reference.agent_id)],
        }
    return report


def render_report(report: dict[str, Any]) -> str:
    lines = [f"agent     {report['agent']}", f"owner     {report['owner']}",
             f"wallet    {report['wallet'] or '(none)'}", f"uri       {report['agent_uri']}"]
    file = report["file"]
    if file is None:
        lines.append(f"file      unreadable: {report['file_error']}")
    else:
        products = ", ".join(f"{name} {price}" for name, price in file["products"].items())
        lines += [f"name      {file['name']}", f"about     {file['description']}",
                  f"broker    {file['broker']} (catalog {file['catalog_topic']}, protocol "
                  f"{file['protocol_version']})",
                  f"escrow    {file['escrow']} on chain {file['chain_id']}",
                  f"products  {products}"]
    feedback = report["feedback"]
    if feedback is None:
        lines.append("feedback  (no reputation registry known)")
    elif not feedback["count"]:
        lines.append("feedback  none yet")
    else:
        mean = feedback["value"] / 10 ** feedback["decimals"]
        lines.append(f"feedback  {feedback['count']}, mean {mean:g}")
        for item in feedback["items"]:
            revoked = " (revoked)" if item["revoked"] else ""
            lines.append(f"          {item['client']} #{item['index']}: {item['value']}"
                         f"{revoked}")
    return "\n".join(lines)
