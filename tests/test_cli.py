import json

from perfkit.cli import main


def test_zoo_json_lists_the_eight_with_published_accuracy(capsys):
    assert main(["zoo", "--json"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"alexnet", "vgg16", "resnet18", "resnet50", "googlenet", "inception_v3", "mobilenet_v2", "densenet121"} <= rows.keys()
    assert rows["alexnet"]["acc1_pct"] == 56.522 and rows["alexnet"]["acc5_pct"] == 79.066
    assert rows["resnet18"]["params"] == 11689512 and rows["resnet18"]["weights_cached"] is False
    assert rows["inception_v3"]["input_size"] == [3, 299, 299]


def test_runs_lists_the_store(capsys, store):
    with store.run("perfkit something") as run_id:
        pass
    assert main(["runs", "--json", "--store", str(store.path)]) == 0
    [run] = json.loads(capsys.readouterr().out)
    assert run["id"] == run_id and run["status"] == "ok" and run["command"] == "perfkit something"


def test_user_errors_exit_nonzero_without_traceback(capsys):
    assert main(["summary", "resnet19"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnet19'" in err and "Traceback" not in err


def test_sigterm_is_handled_like_ctrl_c_and_the_handler_is_put_back(store, monkeypatch, capsys):
    import os
    import signal

    from perfkit.cli import history
    from perfkit.record import recording

    started = []

    def killed(args):
        with recording(store) as rec:
            started.append(rec.run_id)
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs as os.kill returns
            raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(history, "runs", killed)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["runs"]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip() == ("terminated (SIGTERM): the run is marked interrupted; finished records "
                                               "are kept in the store")
    assert store.get_run(started[0])["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is before  # a library caller's (here pytest's) handling is left as it was
