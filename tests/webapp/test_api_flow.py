"""The whole studio flow over REST, as issue 5 lists it: accounts, upload, generate with image guidance
and a mix, submit, review, four-eyes, search, the PNG recipe, and the export of approved images."""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile

from storage.metadata import read_png_metadata
from tests.webapp.conftest import PASSWORD, Live
from tests.webapp.helpers import generate, png_bytes, unique_word, upload


def test_the_whole_flow_over_rest(live: Live) -> None:
    admin = live.client(live.person("admin"))
    word = unique_word()

    # 1. an admin creates a member and a reviewer, and gives each an API token
    people = {}
    for role in ("member", "reviewer"):
        name = f"{role}-{word}"
        created = admin.post("/api/v1/users", json={"name": name, "role": role, "password": PASSWORD})
        assert created.status_code == 201, created.text
        assert created.json() == {"name": name, "role": role, "active": True, "password": None}
        token = admin.post("/api/v1/tokens", json={"user": name, "name": "flow"})
        assert token.status_code == 201, token.text
        people[role] = live.client(token.json()["token"])
    member, reviewer = people["member"], people["reviewer"]
    assert member.get("/api/v1/me").json()["role"] == "member"

    # 2. the member uploads a guidance image and generates with image guidance and a mix
    uploaded = upload(member, png_bytes("blue"))
    assert uploaded.status_code == 201, uploaded.text
    guide = uploaded.json()
    assert set(guide) == {"id", "sha256", "width", "height"} and (guide["width"], guide["height"]) == (48, 48)
    prompt = f"a red circle {word}"
    done = generate(
        member,
        prompt,
        seed=1234,
        guidance_image=str(guide["id"]),
        image_guidance_scale=0.05,
        image_guidance_decay="linear",
        mix=[{"text": "green square", "weight": 0.5}, {"image": str(guide["id"]), "weight": -0.5}],
    )
    assert done["seed"] == 1234 and done["error"] is None
    assert done["progress"]["step"] == done["progress"]["total"] > 0
    assert done["params"]["image_guidance_decay"] == "linear" and len(done["params"]["mix"]) == 2
    [image] = done["images"]
    assert image["review_status"] == "draft" and image["url"] == f"/api/v1/images/{image['id']}"

    # 3. the member submits the image
    submitted = member.post(f"/api/v1/images/{image['id']}/submit")
    assert submitted.status_code == 200 and submitted.json()["review_status"] == "pending"

    # 5a. the member cannot review
    refused = member.post(
        f"/api/v1/images/{image['id']}/reviews", json={"decision": "approve", "comment": ""}
    )
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"

    # 4. the reviewer approves it
    approved = reviewer.post(
        f"/api/v1/images/{image['id']}/reviews", json={"decision": "approve", "comment": "ok"}
    )
    assert approved.status_code == 201, approved.text
    assert approved.json()["review_status"] == "approved"

    # 5b. the reviewer cannot approve their own image (four-eyes)
    own = generate(reviewer, f"a blue triangle {word}")
    own_image = own["images"][0]["id"]
    assert reviewer.post(f"/api/v1/images/{own_image}/submit").status_code == 200
    four_eyes = reviewer.post(f"/api/v1/images/{own_image}/reviews", json={"decision": "approve"})
    assert four_eyes.status_code == 403
    assert "Four-eyes" in four_eyes.json()["detail"]

    # 6. history search finds the prompt
    found = member.get("/api/v1/prompts", params={"q": word})
    assert found.status_code == 200
    prompts = {item["prompt"] for item in found.json()["items"]}
    assert prompts == {prompt, f"a blue triangle {word}"} and found.json()["total"] == 2
    approved_only = member.get("/api/v1/prompts", params={"q": word, "status": "approved"}).json()
    assert [item["generation_id"] for item in approved_only["items"]] == [done["id"]]

    # 7. the PNG's parameters chunk round-trips
    png = member.get(image["url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    recipe = read_png_metadata(png.content)
    assert (recipe.prompt, recipe.seed, recipe.steps) == (prompt, 1234, done["params"]["steps"])
    assert (recipe.width, recipe.height) == (image["width"], image["height"])
    assert recipe.generation_id == done["id"] and recipe.guidance["upload_sha256"] == guide["sha256"]
    assert [m.get("text") for m in recipe.mix] == ["green square", None]

    # 8. the export holds approved images only
    exported = reviewer.get("/api/v1/export", params={"status": "approved"})
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
        ids = {entry["image_id"] for entry in manifest}
        assert image["id"] in ids and own_image not in ids
        assert {entry["review_status"] for entry in manifest} == {"approved"}
        assert {int(row["image_id"]) for row in rows} == ids
        ours = next(entry for entry in manifest if entry["image_id"] == image["id"])
        assert archive.read(ours["file"]) == png.content


def test_a_running_generation_reports_its_stage_and_each_images_own_step(live: Live) -> None:
    client = live.client(live.person())
    steps = 15
    job = {"prompt": f"a red circle {unique_word()}", "steps": steps, "num_images": 2}
    generation_id = client.post("/api/v1/generations", json=job).json()["id"]
    deadline = time.monotonic() + 120
    while True:
        body = client.get(f"/api/v1/generations/{generation_id}").json()
        progress = body["progress"]
        if body["status"] != "queued" and progress["stage"] == "denoising" and progress["image_step"] >= 1:
            break
        assert body["status"] in ("queued", "running") and time.monotonic() < deadline, body
        time.sleep(0.05)
    client.delete(f"/api/v1/generations/{generation_id}")
    assert progress["running_images"] == [0, 1] and progress["image_steps"] == steps, progress
    assert progress["image_step"] <= steps and progress["total"] == 2 * steps
    assert progress["step"] == 2 * progress["image_step"], "steps over all images still count both"
    assert progress["eta_s"] is not None and progress["eta_s"] > 0
    assert "previews" not in progress
