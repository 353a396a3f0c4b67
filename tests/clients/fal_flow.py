"""The official fal client (PyPI fal-client 1.0.3) against `restyle sim`.

Usage: SIM=http://127.0.0.1:PORT FAL_KEY=... python fal_flow.py queue|errors|upload [FILE]

Prints one JSON object per line for tests/it/official_clients.rs to check. Everything
below is the library's own code path (submit, status, iter_events, get, result,
subscribe, upload); the only change is where it sends requests (see `point_at_sim`).
"""

import json
import os
import sys

import fal_client
import fal_client.client as fal_module

SIM = os.environ["SIM"].rstrip("/")
EDIT = "fal-ai/kling-video/o1/video-to-video/edit"
REFERENCE = "fal-ai/kling-video/o1/video-to-video/reference"
STD_EDIT = "fal-ai/kling-video/o1/standard/video-to-video/edit"
STD_REFERENCE = "fal-ai/kling-video/o1/standard/video-to-video/reference"
VIDEO = "https://media.example.com/clip.mp4"
POLL = 0.05  # seconds between status polls (the library's default is 0.1)


def point_at_sim():
    """Points the client at the simulator, and changes nothing else.

    fal-client builds its queue address as f"https://{FAL_QUEUE_RUN_HOST}/" (auth.py,
    client.py QUEUE_URL_FORMAT): the environment variable sets the host but the scheme
    stays https, so it cannot name a plain-HTTP loopback server. Its storage hosts
    (REST_URL, CDN_URL) are module constants with no override at all. So the three
    constants are set here, before the client makes any request.
    """
    fal_module.QUEUE_URL_FORMAT = SIM + "/"
    fal_module.REST_URL = SIM
    fal_module.CDN_URL = SIM


def emit(**fields):
    print(json.dumps(fields), flush=True)


def edit_args(prompt, video=VIDEO):
    return {
        "prompt": prompt + " with @Element1",
        "video_url": video,
        "elements": [
            {
                "frontal_image_url": "https://media.example.com/hero.png",
                "reference_image_urls": ["https://media.example.com/side.png"],
            }
        ],
        "keep_audio": False,
    }


def reference_args(prompt):
    return {
        "prompt": prompt + " in the style of @Image1",
        "video_url": VIDEO,
        "image_urls": ["https://media.example.com/look.png"],
        "aspect_ratio": "16:9",
        "duration": "5",
    }


ENDPOINTS = {
    EDIT: edit_args("pro edit"),
    REFERENCE: reference_args("pro reference"),
    STD_EDIT: edit_args("standard edit"),
    STD_REFERENCE: reference_args("standard reference"),
}


def queue(client):
    """submit -> status (without and with logs) -> result, on all four endpoints; then
    the documented one-call way, subscribe, for edit and reference."""
    for endpoint, args in ENDPOINTS.items():
        handle = client.submit(endpoint, args)
        first = handle.status(with_logs=False)
        if not isinstance(first, fal_client.Queued):
            assert first.logs is None, first
        logged = [
            s.logs
            for s in handle.iter_events(with_logs=True, interval=POLL)
            if not isinstance(s, fal_client.Queued)
        ]
        assert logged and all(isinstance(l, list) for l in logged), logged
        done = handle.status(with_logs=False)
        assert isinstance(done, fal_client.Completed), done
        assert done.logs is None and done.error is None, done
        result = handle.get(interval=POLL)
        # The handle rebuilt from the app id alone (no endpoint sub-path) finds it too.
        assert client.result(endpoint, handle.request_id) == result
        emit(check="queue", endpoint=endpoint, request_id=handle.request_id,
             url=result["video"]["url"])
    for endpoint, args in ((EDIT, edit_args("subscribed edit")),
                           (REFERENCE, reference_args("subscribed reference"))):
        ids = []
        result = client.subscribe(endpoint, args, with_logs=True, interval=POLL,
                                  on_enqueue=ids.append)
        emit(check="subscribe", endpoint=endpoint, request_id=ids[0],
             url=result["video"]["url"])


def failed(handle):
    """Polls to Completed and fetches the result, which must raise."""
    done = None
    for done in handle.iter_events(with_logs=False, interval=POLL):
        pass
    try:
        handle.get(interval=POLL)
    except fal_client.FalClientHTTPError as e:
        return done, e
    raise AssertionError("a failed request's result did not raise")


def errors(client):
    """A model error, a runner failure fal retried, one it did not (X-Fal-No-Retry)."""
    done, e = failed(client.submit(EDIT, edit_args("FAILME please")))
    emit(check="model_error", status_error=done.error, status_error_type=done.error_type,
         http=e.status_code, error_type=e.error_type, message=str(e))
    ids = []
    result = client.subscribe(EDIT, edit_args("retried by fal"), interval=POLL,
                              on_enqueue=ids.append)
    emit(check="retried", request_id=ids[0], url=result["video"]["url"])
    handle = client.submit(EDIT, edit_args("not retried"), headers={"X-Fal-No-Retry": "1"})
    done, e = failed(handle)
    emit(check="no_retry", status_error=done.error, status_error_type=done.error_type,
         http=e.status_code, error_type=e.error_type, message=str(e))


def upload(client, path):
    """Uploads a small MP4 both ways the client knows (CDN v3, and the storage fallback),
    then runs a job on the uploaded URL."""
    cdn_url = client.upload_file(path)
    with open(path, "rb") as f:
        storage_url = client.upload(f.read(), "video/mp4", file_name="clip.mp4",
                                    repository="fal")
    emit(check="uploaded", cdn_url=cdn_url, storage_url=storage_url)
    ids = []
    result = client.subscribe(EDIT, edit_args("uploaded clip", video=cdn_url),
                              interval=POLL, on_enqueue=ids.append)
    emit(check="upload_job", request_id=ids[0], url=result["video"]["url"])


def main():
    point_at_sim()
    client = fal_client.SyncClient(key=os.environ["FAL_KEY"])
    mode = sys.argv[1]
    if mode == "queue":
        queue(client)
    elif mode == "errors":
        errors(client)
    elif mode == "upload":
        upload(client, sys.argv[2])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
