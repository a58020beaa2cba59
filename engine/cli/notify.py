"""``lmconsole notify``: which services ``settings.notify`` tells, and ``--test`` to send one message now."""

from __future__ import annotations

from engine.errors import UserError


def _schemes(urls) -> str:
    # a URL's scheme only: the rest of an Apprise URL often holds a secret (a webhook token, a password)
    return ", ".join(u.split("://", 1)[0] + "://..." for u in urls)


def cmd_notify(args, manifest) -> int:
    from engine.job.notify import make_notice, send

    urls = manifest.settings.notify
    if not urls:
        raise UserError(
            f"settings.notify in {manifest.path} lists no URL; add one to [settings], "
            'e.g. notify = ["ntfy://my-topic"] (any Apprise URL)'
        )
    if not args.test:
        print(f"notifications go to {len(urls)} URL(s): {_schemes(urls)}; `lmconsole notify --test` sends one")
        return 0
    notice = make_notice(
        "test", "notify --test", f"a test message from {manifest.path}: jobs of this manifest are told here"
    )
    problems = send(urls, notice)
    for line in problems:
        print(f"lmconsole notify: {line}")
    sent = len(urls) - len(problems)
    print(f"sent a test notification to {sent} of {len(urls)} URL(s) ({_schemes(urls)})")
    return 1 if problems else 0
