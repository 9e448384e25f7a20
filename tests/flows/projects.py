"""A small real DVC project whose stages record when they run: the flows' test bed."""

import sys
import textwrap

import yaml

PY = sys.executable


def write_project(root, fail_on: str = "", crash_once: str = ""):
    """Three stages: make -> (left, right) -> join; each appends its name to runs.log when it runs.
    `fail_on` fails as bad input (exit 2) while `broken` exists; `crash_once` is killed (SIGKILL) on its
    first run, leaving `crashed`, and runs normally after."""
    step = textwrap.dedent(
        f"""\
        import os, signal, sys, pathlib
        name, out, *ins = sys.argv[1:]
        if name == {fail_on!r} and pathlib.Path('broken').exists():
            print(f'{{name}}: data/broken.bin: bad input', file=sys.stderr); sys.exit(2)
        if name == {crash_once!r} and not pathlib.Path('crashed').exists():
            pathlib.Path('crashed').touch(); os.kill(os.getpid(), signal.SIGKILL)
        text = ''.join(pathlib.Path(i).read_text() for i in ins) + name + '\\n'
        pathlib.Path(out).write_text(text)
        with open('runs.log', 'a') as log: log.write(name + '\\n')
        """
    )
    (root / "step.py").write_text(step)
    (root / "params.yaml").write_text(yaml.safe_dump({"launch": {"concurrency": 2, "retries": 1}}))
    stage = lambda name, out, *ins: {  # noqa: E731
        "cmd": f"{PY} step.py {name} {out} {' '.join(ins)}",
        "deps": ["step.py", *ins],
        "outs": [{out: {"cache": False}}],
    }
    dvc_yaml = {
        "stages": {
            "make": stage("make", "a.txt"),
            "left": stage("left", "b.txt", "a.txt"),
            "right": stage("right", "c.txt", "a.txt"),
            "join": stage("join", "d.txt", "b.txt", "c.txt"),
        }
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml))
    (root / ".gitignore").write_text("runs.log\ncrashed\n")


def runs_log(root):
    log = root / "runs.log"
    return sorted(log.read_text().split()) if log.exists() else []


def write_param_project(root, hold: bool = False):
    """One stage that reads params.yaml: score = x * y, written as a DVC metric. With `hold`, a run
    whose toy.hold names a file creates it and then waits, for a test to kill it mid-stage."""
    (root / "score.py").write_text(
        "import json, pathlib, time, yaml\n"
        "p = yaml.safe_load(open('params.yaml'))['toy']\n"
        "if p.get('hold'):\n"
        "    pathlib.Path(p['hold']).touch()\n"
        "    time.sleep(3600)\n"
        "json.dump({'score': p['x'] * p['y']}, open('score.json', 'w'))\n"
    )
    toy = {"x": 1, "y": 10, "hold": ""} if hold else {"x": 1, "y": 10}
    (root / "params.yaml").write_text(yaml.safe_dump({"toy": toy}))
    dvc_yaml = {
        "stages": {
            "score": {
                "cmd": f"{PY} score.py",
                "deps": ["score.py"],
                "params": ["toy"],
                "metrics": [{"score.json": {"cache": False}}],
            }
        }
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml))


def write_pretrain_project(root):
    """One `pretrain@rotation` stage that speaks as sslflow's does: a progress line on stdout (not flushed:
    the flow must run it unbuffered), then it waits until the flow has shown that line (the test drops
    `ack` when the line reaches Prefect's task log), a last line, metrics/rotation/pretrain.json."""
    (root / "train.py").write_text(
        textwrap.dedent(
            """\
            import json, pathlib, sys, time
            method = sys.argv[1]
            print(f"pretrain {method}: step 1/2  epoch 1/1  loss 1.5000  acc 25.0%  lr 0.1  10 img/s  eta 0:01")
            for _ in range(12000):  # the test answers at once; two minutes is only a bound for a broken flow
                if pathlib.Path("ack").exists():
                    break
                time.sleep(0.01)
            else:
                sys.exit(f"pretrain {method}: the first line never reached the flow's log while the stage ran")
            print(f"pretrain {method}: step 2/2  epoch 1/1  loss 1.2500  acc 50.0%  lr 0  10 img/s  eta 0:00")
            out = pathlib.Path(f"metrics/{method}/pretrain.json")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"method": method, "steps": 2, "final_loss": 1.25}))
            """
        )
    )
    (root / "params.yaml").write_text(yaml.safe_dump({"launch": {"concurrency": 1, "retries": 0}}))
    dvc_yaml = {
        "stages": {
            "pretrain": {
                "foreach": ["rotation"],
                "do": {
                    "cmd": f"{PY} train.py ${{item}}",
                    "deps": ["train.py"],
                    "metrics": [{"metrics/${item}/pretrain.json": {"cache": False}}],
                },
            }
        }
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml))
    (root / ".gitignore").write_text("ack\n")
