"""train.init_from: a vigil model.pt, a state dict, .safetensors and .onnx start a model; a misfit is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from models.registry import create_model
from tasks.starting_weights import StartingWeightsError, apply_starting_weights, file_digest


def _source() -> torch.nn.Module:
    torch.manual_seed(1)
    model = create_model("resnet_tiny", in_chans=1, num_classes=3)
    with torch.no_grad():  # trained-looking weights: distinct values (the exporter merges identical tensors)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        model.train()(torch.randn(4, 1, 32, 32))  # BatchNorm statistics a fresh model would not have
    return model.eval()


def _fresh() -> torch.nn.Module:
    torch.manual_seed(2)
    return create_model("resnet_tiny", in_chans=1, num_classes=3)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _write(kind: str, model: torch.nn.Module, folder: Path) -> Path:
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if kind == "model.pt":
        path = folder / "model.pt"
        torch.save({"arch": "resnet_tiny", "state_dict": state, "normalization": {"mean": [0.3], "std": [0.2]}}, path)
    elif kind == "state_dict":
        path = folder / "weights.pth"
        torch.save(state, path)
    elif kind == "safetensors":
        path = folder / "weights.safetensors"
        save_file(state, str(path))
    else:
        path = folder / "model.onnx"
        torch.onnx.export(
            model,
            torch.zeros(1, 1, 32, 32),
            str(path),
            dynamo=False,
            do_constant_folding=False,
            training=torch.onnx.TrainingMode.PRESERVE,
        )
    return path


@pytest.mark.parametrize("kind", ["model.pt", "state_dict", "safetensors", "onnx"])
def test_each_format_starts_the_model_with_exactly_its_weights(tmp_path: Path, kind: str) -> None:
    source, target = _source(), _fresh()
    assert not _same(source, target)
    assert apply_starting_weights(target, _write(kind, source, tmp_path)) == kind
    if kind == "onnx":  # ONNX carries no integer bookkeeping (num_batches_tracked): compare the float tensors
        s, t = source.state_dict(), target.state_dict()
        assert all(torch.equal(s[k], t[k]) for k in s if s[k].is_floating_point())
    else:
        assert _same(source, target)
    x = torch.randn(2, 1, 32, 32)
    assert torch.allclose(source.eval()(x), target.eval()(x), atol=1e-6)


def test_a_misfit_is_refused_naming_the_parameters(tmp_path: Path) -> None:
    other = create_model("resnet_tiny", in_chans=1, num_classes=2)
    path = tmp_path / "two_classes.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(StartingWeightsError) as info:
        apply_starting_weights(_fresh(), path)
    message = str(info.value)
    assert "does not fit" in message and "head.fc.weight: file (2, " in message and "vs model (3, " in message


def test_unreadable_files_say_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(StartingWeightsError, match="no such file"):
        apply_starting_weights(_fresh(), tmp_path / "nope.pt")
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(StartingWeightsError, match="not a PyTorch checkpoint"):
        apply_starting_weights(_fresh(), bad)
    lst = tmp_path / "list.pt"
    torch.save([1, 2], lst)
    with pytest.raises(StartingWeightsError, match="holds no state dict"):
        apply_starting_weights(_fresh(), lst)
    onnx_bad = tmp_path / "bad.onnx"
    onnx_bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(StartingWeightsError, match="not a readable ONNX model"):
        apply_starting_weights(_fresh(), onnx_bad)


def test_an_onnx_file_of_another_architecture_is_refused(tmp_path: Path) -> None:
    other = create_model("squeezenet_tiny", in_chans=1, num_classes=3).eval()
    path = _write("onnx", other, tmp_path)
    with pytest.raises(StartingWeightsError, match="ONNX initializers"):
        apply_starting_weights(_fresh(), path)


def test_file_digest_follows_content(tmp_path: Path) -> None:
    p = tmp_path / "w.pth"
    p.write_bytes(b"a")
    first = file_digest(p)
    p.write_bytes(b"b")
    assert file_digest(p) != first and file_digest(tmp_path / "x").startswith("missing:")


def test_onnx_initializers_with_other_names_are_matched_in_order(tmp_path: Path) -> None:
    """Exporters name initializers their own way (torch.export: ``p_stem_conv_weight`` ...): order and shape decide."""
    import onnx

    source = _source()
    path = _write("onnx", source, tmp_path)
    proto = onnx.load(str(path))
    renamed = {init.name: f"w{i}" for i, init in enumerate(proto.graph.initializer)}
    for init in proto.graph.initializer:
        init.name = renamed[init.name]
    for node in proto.graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    onnx.save(proto, str(path))
    target = _fresh()
    assert apply_starting_weights(target, path) == "onnx"
    x = torch.randn(2, 1, 32, 32)
    assert torch.allclose(source.eval()(x), target.eval()(x), atol=1e-6)
