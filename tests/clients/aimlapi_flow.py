"""The official AI/ML API SDK (PyPI aimlapi-sdk-python 2.24.0rc1, import name `aimlapi`)
against `restyle sim`, through `client.videos.generate_with_polling`.

Usage: AIML_API_BASE=http://127.0.0.1:PORT/v1 AIML_API_KEY=... python aimlapi_flow.py

Nothing in the SDK is changed: AIML_API_BASE and AIML_API_KEY are its own settings
(aimlapi/_client.py), and its video helper replaces the base path with
/v2/video/generations. The helper has no parameters for the O1 video-to-video fields
(video_url, image_list, keep_audio), so they go in extra_body, which it merges into the
POST body. Prints one JSON object per line for tests/it/official_clients.rs.
"""

import hashlib
import json

import aimlapi

EDIT = "klingai/video-o1-video-to-video-edit"
REFERENCE = "klingai/video-o1-video-to-video-reference"
VIDEO = "https://media.example.com/clip.mp4"
POLL = 0.05  # seconds between polls (the helper's default is 10)


def emit(**fields):
    print(json.dumps(fields), flush=True)


def generate(client, **kwargs):
    """generate_with_polling, remembering the generation id the submit answered."""
    seen = []
    result = client.videos.generate_with_polling(
        poll_interval=POLL, poll_timeout=60, status_callback=seen.append, **kwargs)
    return seen[0]["id"], result


def main():
    client = aimlapi.AIMLAPI()
    gid, edit = generate(
        client, model=EDIT, prompt="Add a small fairy riding @Element1",
        negative_prompt="blur, watermark",
        extra_body={
            "video_url": VIDEO,
            "keep_audio": False,
            "elements": [{"frontal_image_url": "https://media.example.com/hero.png",
                          "reference_image_urls": ["https://media.example.com/side.png"]}],
        })
    assert edit["status"] == "completed", edit
    emit(check="edit", id=gid, url=edit["video"]["url"])

    gid, reference = generate(
        client, model=REFERENCE, prompt="Same motion in the style of @Image1",
        aspect_ratio="16:9", duration=5, negative_prompt="blur", seed=7,
        enhance_prompt=False,
        extra_body={"video_url": VIDEO, "image_list": ["https://media.example.com/look.png"]})
    assert reference["status"] == "completed", reference
    emit(check="reference", id=gid, url=reference["video"]["url"])

    # return_bytes: the helper finds the URL in the answer and downloads it, without auth.
    gid, data = generate(client, model=EDIT, prompt="Bytes please", return_bytes=True,
                         extra_body={"video_url": VIDEO})
    emit(check="bytes", id=gid, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


if __name__ == "__main__":
    main()
