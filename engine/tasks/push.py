"""``task = "push"``: upload a finished run's model to the Hub as a step of the study.

The step stages exactly what would be uploaded (:func:`engine.hub.publish.stage`: weights,
config, tokenizer, model card) into ``staged/`` of its own run directory, then
uploads that folder. Without a token or a reachable Hub it fails with a one-line
reason and keeps the staged folder; steps that do not depend on it go on. The
token is read by :func:`engine.hub.publish.hub_api` and handed to ``HfApi`` only.
"""

from __future__ import annotations

from engine.errors import JobError
from engine.hub import publish as pushlib
from engine.store.trials import dependency_run
from engine.train.context import TaskContext


def run(ctx: TaskContext) -> dict:
    exp = ctx.exp
    model_run, repo = exp.model_run, exp.hub_model_id
    assert model_run is not None and repo is not None  # the manifest requires both of a push step
    source = dependency_run(ctx.store, model_run)
    ctx.start_model = f"{source.experiment}/{source.run_id}"
    staged = ctx.run.path / "staged"
    try:
        files = pushlib.stage(source, staged, repo)
        ctx.log(f"staged {len(files)} files of {ctx.start_model} in {staged}")
        api = pushlib.hub_api(later="rerun this step where the Hub is reachable")
        if "/" not in repo:  # HF semantics: a bare name goes to the token owner's namespace
            repo = f"{api.whoami()['name']}/{repo}"
        info = pushlib.upload(
            api,
            staged,
            repo,
            private=exp.hub_private_repo,
            revision=exp.hub_revision or None,
            message=f"Upload {ctx.start_model} from lmconsole",
        )
    except pushlib.PushError as exc:
        where = f"staged folder kept: {staged}" if staged.is_dir() else "nothing staged"
        raise JobError(
            f"not pushed: {exc}; {where}",
            f"lmconsole run {exp.name} once the token and the Hub are there, "
            f"or upload the staged folder yourself (hf upload)",
        ) from None
    except Exception as exc:  # noqa: BLE001 - e.g. whoami rejected the token: one line, no traceback
        from engine.secrets import redact

        text = redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
        raise JobError(
            f"not pushed: {text}; staged folder kept: {staged}", "check the token and hub_model_id"
        ) from None
    url = f"https://huggingface.co/{repo}" + (f"/tree/{exp.hub_revision}" if exp.hub_revision else "")
    ctx.log(f"pushed {ctx.start_model} to {url}")
    return {
        "repo_id": repo,
        "url": url,
        "private": exp.hub_private_repo,
        "revision": exp.hub_revision,
        "files": [f.name for f in files],
        "commit": pushlib.commit_of(info),
        "staged": str(staged),
    }
