"""The official MotionGPT release and T2M-GPT's VQ-VAE, in and out.

The reference networks are written here from the architecture (reference §3.1, §4) with the
official attribute names and random weights, so their state dicts have the release's keys.
Imports must give the same codes, features within 1e-4 and logits within 1e-4; an export
re-imports bit-identically.
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

import mgpt_jax
from mgpt_jax import cli
from mgpt_jax.inference.lm_checkpoint import save_lm
from mgpt_jax.inference.tokenize_dataset import Tokenizer
from mgpt_jax.lm.sentencepiece_model import train_sentencepiece

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
nn = torch.nn

NFEATS, WIDTH, CODES, DOWN_T, DEPTH = 263, 16, 512, 2, 2
TEXTS = ["a person walks forward", "someone jumps up and down", "a man waves his left hand",
         "the person turns around slowly", "a woman kicks with her right foot"] * 4
SP_SIZE = 40  # SentencePiece pieces: the LM has SP_SIZE + 100 sentinels + 515 motion rows
ROWS = SP_SIZE + 100 + CODES + 3


# ------------------------------------------------------------ reference networks (PyTorch, NCW)


class ResConv1DBlock(nn.Module):
  def __init__(self, width, dilation):
    super().__init__()
    self.conv1 = nn.Conv1d(width, width, 3, 1, dilation, dilation)
    self.conv2 = nn.Conv1d(width, width, 1)

  def forward(self, x):
    return x + self.conv2(torch.relu(self.conv1(torch.relu(x))))


class Resnet1D(nn.Module):
  def __init__(self, width, depth, growth=3):
    super().__init__()  # dilations largest first
    self.model = nn.Sequential(*[ResConv1DBlock(width, growth ** d) for d in reversed(range(depth))])

  def forward(self, x):
    return self.model(x)


class Encoder(nn.Module):
  def __init__(self):
    super().__init__()
    blocks = [nn.Conv1d(NFEATS, WIDTH, 3, 1, 1), nn.ReLU()]
    blocks += [nn.Sequential(nn.Conv1d(WIDTH, WIDTH, 4, 2, 1), Resnet1D(WIDTH, DEPTH))
               for _ in range(DOWN_T)]
    blocks.append(nn.Conv1d(WIDTH, WIDTH, 3, 1, 1))
    self.model = nn.Sequential(*blocks)


class Decoder(nn.Module):
  def __init__(self):
    super().__init__()
    blocks = [nn.Conv1d(WIDTH, WIDTH, 3, 1, 1), nn.ReLU()]
    blocks += [nn.Sequential(Resnet1D(WIDTH, DEPTH), nn.Upsample(scale_factor=2, mode="nearest"),
                             nn.Conv1d(WIDTH, WIDTH, 3, 1, 1)) for _ in range(DOWN_T)]
    blocks += [nn.Conv1d(WIDTH, WIDTH, 3, 1, 1), nn.ReLU(), nn.Conv1d(WIDTH, NFEATS, 3, 1, 1)]
    self.model = nn.Sequential(*blocks)


class Quantizer(nn.Module):
  def __init__(self):
    super().__init__()
    self.register_buffer("codebook", torch.randn(CODES, WIDTH))


class VQVae(nn.Module):
  def __init__(self):
    super().__init__()
    self.encoder, self.decoder, self.quantizer = Encoder(), Decoder(), Quantizer()

  @torch.no_grad()
  def encode(self, features):  # (B, T, D) normalised -> (B, T/4)
    latent = self.encoder.model(features.permute(0, 2, 1)).permute(0, 2, 1)
    flat = latent.reshape(-1, WIDTH)
    c = self.quantizer.codebook
    distance = (flat ** 2).sum(-1, keepdim=True) - 2 * flat @ c.T + (c ** 2).sum(-1)[None]
    return distance.argmin(-1).reshape(features.shape[0], -1)

  @torch.no_grad()
  def decode(self, codes):  # (B, L) -> (B, 4L, D)
    x = self.quantizer.codebook[codes].permute(0, 2, 1)
    return self.decoder.model(x).permute(0, 2, 1)


class HumanVQVAE(nn.Module):  # T2M-GPT's wrapper: keys under `vqvae.`
  def __init__(self, vq):
    super().__init__()
    self.vqvae = vq


class MLM(nn.Module):
  def __init__(self, language_model):
    super().__init__()
    self.language_model = language_model


class Release(nn.Module):
  """The stage-3 LightningModule's parameter layout: vae, lm, plus metrics and losses."""

  def __init__(self, vq, t5):
    super().__init__()
    self.vae, self.lm = vq, MLM(t5)
    self.metrics = nn.ModuleDict({"TM2TMetrics": nn.Linear(3, 4)})
    self._losses = nn.ModuleDict({"losses_train": nn.Linear(2, 2)})


FLAN_LIKE = dict(d_model=24, d_kv=8, d_ff=40, num_layers=2, num_decoder_layers=2, num_heads=3,
                 feed_forward_proj="gated-gelu", dropout_rate=0.0, relative_attention_num_buckets=32,
                 relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
                 decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  root = tmp_path_factory.mktemp("official")
  torch.manual_seed(0)
  vq = VQVae().eval()
  # The backbone's config.json, as deps/flan-t5-base has it: more rows than its tokenizer uses.
  t5_dir = root / "flan-t5"
  t5_dir.mkdir()
  hf_config = {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"],
               "vocab_size": SP_SIZE + 128, "tie_word_embeddings": False, **FLAN_LIKE}
  (t5_dir / "config.json").write_text(json.dumps(hf_config))
  train_sentencepiece(TEXTS, str(t5_dir / "spiece.model"), vocab_size=SP_SIZE)
  t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(**hf_config)).eval()
  t5.resize_token_embeddings(ROWS)  # what MLM does after add_tokens (len(tokenizer) rows)
  with torch.no_grad():  # Flan-T5's head is its own table
    t5.lm_head.weight = nn.Parameter(torch.randn(ROWS, FLAN_LIKE["d_model"]) * 0.5)
    t5.shared.weight.normal_()
  model = Release(vq, t5)
  checkpoint = str(root / "motiongpt_s3_h3d.tar")
  torch.save({"state_dict": model.state_dict(), "epoch": 7, "global_step": 1234,
              "pytorch-lightning_version": "2.0.0"}, checkpoint)
  net = str(root / "net_last.pth")
  torch.save({"net": HumanVQVAE(vq).state_dict()}, net)
  stats = root / "meta"
  stats.mkdir()
  rng = np.random.default_rng(0)
  np.save(stats / "mean.npy", rng.normal(size=NFEATS))  # float64, as the released files
  np.save(stats / "std.npy", rng.uniform(0.5, 2.0, NFEATS))
  return {"root": root, "vq": vq, "t5": t5, "checkpoint": checkpoint, "net": net,
          "t5_dir": str(t5_dir), "stats": str(root), "state": model.state_dict()}


@pytest.fixture(scope="module")
def imported(release):
  out, bundle = release["root"] / "imported", release["root"] / "bundle"
  assert cli.main(["import-official", release["checkpoint"], "--t5-dir", release["t5_dir"],
                   "--stats-dir", release["stats"], "--out", str(out), "--bundle",
                   str(bundle)]) == 0
  return str(out), str(bundle)


def _motion(batch=3, frames=32, seed=1):
  return np.random.default_rng(seed).normal(size=(batch, frames, NFEATS)).astype(np.float32)


def _vq_parity(vq, directory):
  """(code agreement, max abs feature error) of load_vq against the reference network."""
  module, variables = mgpt_jax.load_vq(directory)
  x = _motion()
  codes = np.asarray(module.apply(variables, x, method=module.encode))
  ref_codes = vq.encode(torch.from_numpy(x)).numpy()
  features = np.asarray(module.apply(variables, ref_codes, method=module.decode))
  ref_features = vq.decode(torch.from_numpy(ref_codes)).numpy()
  return (codes == ref_codes).mean(), np.abs(features - ref_features).max()



def _export_and_reimport(import_dir, lm_dir, tmp_path) -> str:
  """`mgpt export-official` of the imported tokenizer and lm_dir, then `import-official` of
  what it wrote; returns the re-import's directory."""
  out, again = str(tmp_path / "exported"), str(tmp_path / "again")
  assert cli.main(["export-official", "--tokenizer-dir", os.path.join(import_dir, "tokenizer"),
                   "--lm-dir", lm_dir, "--out", out]) == 0
  assert cli.main(["import-official", os.path.join(out, "motiongpt.tar"), "--t5-dir",
                   os.path.join(out, "t5"), "--stats-dir", out, "--out", again]) == 0
  return again

def test_release_tokenizer_parity(release, imported, capsys):
  agreement, error = _vq_parity(release["vq"], os.path.join(imported[0], "tokenizer"))
  with capsys.disabled():
    print(f"\nrelease VQ: codes agree {agreement:.3f}, features max abs error {error:.2e}")
  assert agreement == 1.0 and error < 1e-4
  # `mgpt tokenize-dataset` and `mgpt export` read the directory through Tokenizer: dataset
  # units in, the meta stats applied.
  tokenizer = Tokenizer.load(os.path.join(imported[0], "tokenizer"))
  mean, std = (np.load(os.path.join(release["stats"], "meta", n)) for n in ("mean.npy", "std.npy"))
  x = _motion(seed=2)
  ref = release["vq"].encode(torch.from_numpy(x)).numpy()
  np.testing.assert_array_equal(tokenizer.encode(x * std + mean), ref)
  assert tokenizer.dataset == "humanml3d"


def test_release_lm_parity(release, imported, capsys):
  module, params = mgpt_jax.load_lm(os.path.join(imported[0], "lm"))
  assert module.config.vocab_size == ROWS  # from the tensors, not config.json
  rng = np.random.default_rng(3)
  enc = rng.integers(2, ROWS, (2, 20)); enc[1, 14:] = 0
  target = rng.integers(2, ROWS, (2, 12)); target[1, 9:] = 0
  dec_in = np.concatenate([np.zeros((2, 1), int), target[:, :-1]], axis=1)
  with torch.no_grad():
    ref = release["t5"](input_ids=torch.tensor(enc), attention_mask=torch.tensor(enc > 0),
                        decoder_input_ids=torch.tensor(dec_in)).logits.numpy()
  logits = np.asarray(module.apply({"params": params}, enc, dec_in, target, enable_dropout=False))
  error = np.abs(logits - ref)[target > 0].max()
  with capsys.disabled():
    print(f"\nrelease LM: logits max abs error {error:.2e} (logit scale {np.abs(ref).max():.1f})")
  assert logits.shape == ref.shape and error < 1e-4


def test_release_bundle(release, imported):
  from mgpt_jax.inference.motiongpt import MotionGPT  # pylint: disable=g-import-not-at-top
  system = MotionGPT.load(imported[1])
  assert system.vocab.vocab_size == ROWS and system.vocab.motion_id(0) == SP_SIZE + 100
  mean, std = system.mean, system.std
  x = _motion(seed=4)
  ref = release["vq"].encode(torch.from_numpy(x)).numpy()
  np.testing.assert_array_equal(system.features_to_codes(x * std + mean), ref)


def test_t2m_gpt_net_and_vq_only(release, tmp_path, capsys):
  out = str(tmp_path / "t2m_gpt")
  assert cli.main(["import-official", release["net"], "--vq-only", "--stats-dir",
                   release["stats"], "--out", out]) == 0
  agreement, error = _vq_parity(release["vq"], os.path.join(out, "tokenizer"))
  with capsys.disabled():
    print(f"\nT2M-GPT VQ: codes agree {agreement:.3f}, features max abs error {error:.2e}")
  assert agreement == 1.0 and error < 1e-4
  assert not os.path.exists(os.path.join(out, "lm"))
  # The release's tokenizer alone, without a backbone directory.
  assert cli.main(["import-official", release["checkpoint"], "--vq-only", "--stats-dir",
                   release["stats"], "--out", str(tmp_path / "vae")]) == 0
  assert _vq_parity(release["vq"], str(tmp_path / "vae" / "tokenizer"))[0] == 1.0


def _leaves(tree):
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_export_is_the_release_and_reimports_bit_identically(release, imported, tmp_path):
  out = str(tmp_path / "exported")
  assert cli.main(["export-official", "--tokenizer-dir", os.path.join(imported[0], "tokenizer"),
                   "--lm-dir", os.path.join(imported[0], "lm"), "--out", out]) == 0
  state = torch.load(os.path.join(out, "motiongpt.tar"), weights_only=True)["state_dict"]
  original = {k: v for k, v in release["state"].items() if k.startswith(("vae.", "lm."))}
  assert set(state) == set(original)
  for key, tensor in original.items():
    assert torch.equal(state[key], tensor), key
  # The backbone directory loads in transformers and gives the release's logits.
  t5 = transformers.T5ForConditionalGeneration.from_pretrained(os.path.join(out, "t5")).eval()
  ids = torch.tensor([[5, 9, 140, 300, 1]])
  with torch.no_grad():
    np.testing.assert_allclose(t5(input_ids=ids, decoder_input_ids=ids).logits.numpy(),
                               release["t5"](input_ids=ids, decoder_input_ids=ids).logits.numpy(),
                               atol=1e-5)
  again = str(tmp_path / "again")
  assert cli.main(["import-official", os.path.join(out, "motiongpt.tar"), "--t5-dir",
                   os.path.join(out, "t5"), "--stats-dir", out, "--out", again]) == 0
  for part, load in (("tokenizer", mgpt_jax.load_vq), ("lm", mgpt_jax.load_lm)):
    first, second = (_leaves(load(os.path.join(d, part))[1]) for d in (imported[0], again))
    assert first.keys() == second.keys()
    for name in first:
      assert first[name].dtype == second[name].dtype and np.array_equal(first[name],
                                                                         second[name]), name
  for name in ("Mean.npy", "Std.npy"):
    a, b = (np.load(os.path.join(d, "tokenizer", "assets", name)) for d in (imported[0], again))
    assert np.array_equal(a, b)


def test_export_of_a_model_trained_here(release, imported, tmp_path):
  """Tables padded to a multiple of 128 (as our runs have) are cut to the vocabulary."""
  module, params = mgpt_jax.load_lm(os.path.join(imported[0], "lm"))
  params = jax.tree.map(np.asarray, params)
  padded_rows = -(-ROWS // 128) * 128
  rng = np.random.default_rng(5)
  pad = lambda a: np.concatenate([a, rng.normal(size=(padded_rows - ROWS,) + a.shape[1:])
                                  .astype(np.float32)])
  params["token_embedder"]["embedding"] = pad(params["token_embedder"]["embedding"])
  head = params["decoder"]["logits_dense"]
  head["kernel"] = pad(head["kernel"].T).T
  lm_dir = str(tmp_path / "lm")
  save_lm(lm_dir, module.config.replace(vocab_size=padded_rows), params)
  os.symlink(os.path.join(imported[0], "lm", "assets"), os.path.join(lm_dir, "assets"))
  again = _export_and_reimport(imported[0], lm_dir, tmp_path)
  _, reimported = mgpt_jax.load_lm(os.path.join(again, "lm"))
  np.testing.assert_array_equal(reimported["token_embedder"]["embedding"],
                                params["token_embedder"]["embedding"][:ROWS])
  np.testing.assert_array_equal(reimported["decoder"]["logits_dense"]["kernel"],
                                head["kernel"][:, :ROWS])


def test_errors_are_one_line(release, imported, tmp_path, capsys):
  def fails(*argv):
    assert cli.main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mgpt: error: ") and "\n" not in err and "Traceback" not in err
    return err

  common = ["--stats-dir", release["stats"], "--out", str(tmp_path / "x")]
  assert "already exists" in fails("import-official", release["checkpoint"], "--t5-dir",
                                   release["t5_dir"], "--stats-dir", release["stats"],
                                   "--out", imported[0])
  assert "--vq-only" in fails("import-official", release["net"], "--t5-dir", release["t5_dir"],
                              *common)
  assert "--t5-dir" in fails("import-official", release["checkpoint"], *common)
  trans = str(tmp_path / "trans.pth")
  torch.save({"trans": {"w": torch.zeros(2)}}, trans)
  assert "T2M-GPT's transformer" in fails("import-official", trans, "--vq-only", *common)
  small = tmp_path / "small_t5"
  small.mkdir()
  (small / "config.json").write_text(json.dumps({"model_type": "t5", "vocab_size": 168,
                                                 **{**FLAN_LIKE, "d_model": 32}}))
  assert "d_model 32" in fails("import-official", release["checkpoint"], "--t5-dir", str(small),
                               *common)
  (small / "config.json").write_text(json.dumps({"model_type": "t5", "vocab_size": 168,
                                                 **{**FLAN_LIKE, "num_layers": 1}}))
  assert "config does not have" in fails("import-official", release["checkpoint"], "--t5-dir",
                                         str(small), *common)
  pickled = str(tmp_path / "pickled.tar")
  torch.save({"state_dict": {}, "hyper_parameters": Release}, pickled)
  assert "weights-only" in fails("import-official", pickled, "--vq-only", *common)
  assert not os.path.exists(tmp_path / "x")


def test_export_unties_a_tied_head(release, imported, tmp_path):
  """A tied table (T5X's logits_via_embedding) goes out as the reference's explicit head."""
  module, params = mgpt_jax.load_lm(os.path.join(imported[0], "lm"))
  params = jax.tree.map(np.asarray, params)
  del params["decoder"]["logits_dense"]
  tied = module.config.replace(logits_via_embedding=True)
  lm_dir = str(tmp_path / "lm")
  save_lm(lm_dir, tied, params)
  again = _export_and_reimport(imported[0], lm_dir, tmp_path)
  untied_module, untied = mgpt_jax.load_lm(os.path.join(again, "lm"))
  assert not untied_module.config.logits_via_embedding
  tokens = np.array([[5, 9, 140, 300, 1]])
  a = module.__class__(tied).apply({"params": params}, tokens, tokens, tokens,
                                   enable_dropout=False)
  b = untied_module.apply({"params": untied}, tokens, tokens, tokens, enable_dropout=False)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
