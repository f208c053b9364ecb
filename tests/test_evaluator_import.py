"""The T2M evaluator importer: PyTorch modules with the official key layout -> our store -> the
same embeddings; plus the safe pickle parser, the word vectorizer and the GRU's masking."""
from __future__ import annotations

import os
import pickle
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgpt_jax.eval.evaluator import safe_pickle
from mgpt_jax.eval.evaluator.importer import import_t2m_evaluator
from mgpt_jax.eval.evaluator.networks import BiGRU
from mgpt_jax.eval.evaluator.store import load_evaluator
from mgpt_jax.eval.evaluator.word_vectors import POS_INDEX, WordVectorizer

torch = pytest.importorskip("torch")
nn = torch.nn
D = 263
WORDS = ["unk", "sos", "eos", "a", "man", "walk", "left", "forward", "slowly", "the", "person",
         "jump", "up", "and", "down", "turn", "around", "hand", "wave", "with", "his", "right",
         "arm", "kick", "leg", "sit", "chair", "stand", "run", "in", "circle", "then", "stop",
         "throw", "ball", "lift", "both", "arms", "bend", "knee", "step", "back", "spin", "fast",
         "clockwise", "happy", "dance", "it", "on", "floor"]


# --------------------------------------------------------------------------- reference modules


def _bigru_last(gru, x, lengths, hidden, pack):
  h0 = hidden.repeat(1, x.shape[0], 1)
  if pack:
    x = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
  _, last = gru(x, h0)
  return torch.cat([last[0], last[1]], dim=-1)


class TorchMovement(nn.Module):
  def __init__(self, d_in):
    super().__init__()
    self.main = nn.Sequential(nn.Conv1d(d_in, 512, 4, 2, 1), nn.Dropout(0.2), nn.LeakyReLU(0.2),
                              nn.Conv1d(512, 512, 4, 2, 1), nn.Dropout(0.2), nn.LeakyReLU(0.2))
    self.out_net = nn.Linear(512, 512)

  def forward(self, x):
    return self.out_net(self.main(x.permute(0, 2, 1)).permute(0, 2, 1))


class TorchGRUTower(nn.Module):
  """Text (pos_size set) or motion tower, with the official attribute names."""

  def __init__(self, n_in, hidden, pos_size=None):
    super().__init__()
    if pos_size:
      self.pos_emb = nn.Linear(pos_size, n_in)
    self.input_emb = nn.Linear(n_in, hidden)
    self.gru = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
    self.output_net = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.LayerNorm(hidden),
                                    nn.LeakyReLU(0.2), nn.Linear(hidden, 512))
    self.hidden = nn.Parameter(torch.randn(2, 1, hidden))

  def forward(self, x, lengths, pos=None, pack=True):
    if pos is not None:
      x = x + self.pos_emb(pos)
    return self.output_net(_bigru_last(self.gru, self.input_emb(x), lengths, self.hidden, pack))


def _rel(ours, ref):
  diff = np.abs(ours - ref).max()
  return float(diff), float(diff / np.abs(ref).max())


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
  root = tmp_path_factory.mktemp("t2m")
  torch.manual_seed(0)
  text, motion = TorchGRUTower(300, 512, pos_size=15), TorchGRUTower(512, 1024)
  movement = TorchMovement(D - 4)
  with torch.no_grad():  # move LayerNorm and biases off their defaults so the mapping is tested
    for p in list(text.parameters()) + list(motion.parameters()):
      p.add_(0.05 * torch.randn_like(p))
  for m in (text, motion, movement):
    m.eval()
  optimizer = torch.optim.Adam(text.parameters())
  ckpt = root / "finest.tar"
  torch.save({"text_encoder": text.state_dict(), "motion_encoder": motion.state_dict(),
              "movement_encoder": movement.state_dict(), "opt_text_encoder": optimizer.state_dict(),
              "epoch": 7, "iter": 1234}, ckpt)
  glove = root / "glove"
  glove.mkdir()
  rng = np.random.default_rng(0)
  order = rng.permutation(len(WORDS))  # rows of data.npy are not in word-list order
  np.save(glove / "our_vab_data.npy", rng.normal(size=(len(WORDS), 300)).astype(np.float32))
  with open(glove / "our_vab_words.pkl", "wb") as f:
    pickle.dump(WORDS, f)
  with open(glove / "our_vab_idx.pkl", "wb") as f:
    pickle.dump({w: int(order[i]) for i, w in enumerate(WORDS)}, f, protocol=2)
  stats = root / "stats" / "meta"
  stats.mkdir(parents=True)
  mean, std = rng.normal(size=D).astype(np.float32), rng.uniform(0.5, 2, D).astype(np.float32)
  np.save(stats / "mean.npy", mean)
  np.save(stats / "std.npy", std)
  return {"root": root, "ckpt": ckpt, "glove": glove, "stats": root / "stats", "text": text,
          "motion": motion, "movement": movement, "mean": mean, "std": std}


def _import(assets, name, **kw):
  return import_t2m_evaluator(assets["ckpt"], assets["glove"], assets["stats"],
                              assets["root"] / name, **kw)


CAPTIONS = [["a/DET", "man/NOUN", "walk/VERB", "forward/ADV", "slowly/ADV"],
            ["the/DET", "person/NOUN", "jump/VERB", "up/ADP", "and/CCONJ", "down/ADP"],
            ["zzz/NOUN"],
            [f"{w}/NOUN" for w in WORDS[3:30]],  # longer than 20: cropped
            ["turn/VERB", "around/ADV", "happy/ADJ", "dance/VERB", "qqq/VERB", "on/ADP",
             "floor/NOUN"]]
LENGTHS = [40, 64, 97, 196, 230, 8, 120]


def test_import_matches_torch(assets):
  out = _import(assets, "packed")
  evaluator = load_evaluator(out, batch_size=4)  # 5 captions / 7 motions: a padded last batch
  assert evaluator.dataset == "humanml3d" and evaluator.config.feature_dim == D
  assert evaluator.provenance["epoch"] == 7
  # Text: our vectorizer's inputs through the torch tower.
  words, pos, lens = evaluator.vectorizer.encode_batch(CAPTIONS)
  with torch.no_grad():
    ref = assets["text"](torch.from_numpy(words), torch.from_numpy(lens).long(),
                         pos=torch.from_numpy(pos)).numpy()
  ours = evaluator.embed_texts(CAPTIONS)
  abs_t, rel_t = _rel(ours, ref)
  # Motion: raw features, normalised and zero-padded to 196 here, independently of the store.
  rng = np.random.default_rng(1)
  motions = [rng.normal(size=(n, D)).astype(np.float32) * assets["std"] + assets["mean"]
             for n in LENGTHS]
  used = [min(n, 196) // 4 * 4 for n in LENGTHS]
  batch = np.zeros((len(motions), 196, D), np.float32)
  for i, (m, n) in enumerate(zip(motions, used)):
    batch[i, :n] = (m[:n] - assets["mean"]) / assets["std"]
  with torch.no_grad():
    movements = assets["movement"](torch.from_numpy(batch[..., :-4]))
    m_lens = torch.tensor(used) // 4
    ref_packed = assets["motion"](movements, m_lens).numpy()
    ref_unpacked = assets["motion"](movements, m_lens, pack=False).numpy()
  abs_m, rel_m = _rel(evaluator.embed_motions(motions), ref_packed)
  unpacked = load_evaluator(_import(assets, "unpacked", pack_motion=False), batch_size=4)
  abs_u, rel_u = _rel(unpacked.embed_motions(motions), ref_unpacked)
  print(f"\nmax abs/rel diff vs torch: text {abs_t:.2e}/{rel_t:.2e}, motion packed "
        f"{abs_m:.2e}/{rel_m:.2e}, unpacked {abs_u:.2e}/{rel_u:.2e}")
  assert max(rel_t, rel_m, rel_u) < 1e-4
  assert _rel(ref_packed, ref_unpacked)[1] > 1e-3  # the two protocols really differ
  # Normalised input gives the same result as raw input.
  normed, _ = evaluator.prepare_motions(motions[:2])
  again = evaluator.embed_motions([normed[0, :40], normed[1, :64]], normalized=True)
  np.testing.assert_allclose(again, ref_packed[:2], atol=1e-4 * np.abs(ref_packed).max())


def test_gru_masking_ignores_padding():
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 7, 5))
  lengths = jnp.array([7, 3, 1])
  model = BiGRU(hidden=8)
  params = model.init(jax.random.PRNGKey(1), x, lengths)
  out = model.apply(params, x, lengths)
  pad = jnp.arange(7)[None, :, None] >= lengths[:, None, None]
  noisy = jnp.where(pad, 100.0 * jax.random.normal(jax.random.PRNGKey(2), x.shape), x)
  np.testing.assert_allclose(model.apply(params, noisy, lengths), out, atol=1e-6)
  for i, n in enumerate([7, 3, 1]):  # = the sequence alone at its own length
    alone = model.apply(params, x[i:i + 1, :n], jnp.array([n]))
    np.testing.assert_allclose(alone[0], out[i], atol=1e-6)
  unpacked = BiGRU(hidden=8, pack=False).apply(params, noisy, lengths)
  assert np.abs(unpacked[1:] - out[1:]).max() > 1e-3


def test_vectorizer_rules():
  vectors = np.arange(len(WORDS) * 3, dtype=np.float32).reshape(-1, 3)
  vec = WordVectorizer(WORDS, vectors)
  embs, pos, length = vec.encode(["walk/NOUN", "man/NOUN", "zzz/VERB", "the/XYZ"])
  assert length == 6 and embs.shape == (22, 3) and pos.shape == (22, 15)
  row = {w: i for i, w in enumerate(WORDS)}
  expect = ["sos", "walk", "man", "unk", "the", "eos"] + ["unk"] * 16
  np.testing.assert_array_equal(embs, vectors[[row[w] for w in expect]])
  names = ["OTHER", "Act_VIP", "NOUN", "OTHER", "OTHER", "OTHER"] + ["OTHER"] * 16
  np.testing.assert_array_equal(pos.argmax(1), [POS_INDEX[n] for n in names])
  assert vec.encode(["a/DET"] * 30)[2] == 22
  with pytest.raises(ValueError, match="lacks"):
    WordVectorizer(WORDS[1:], vectors[1:])
  with pytest.raises(ValueError, match="word/POS"):
    vec.encode(["walk"])


def test_safe_pickle_roundtrip_and_refusal(tmp_path):
  shared = [1, 2]
  obj = {"words": ["a", "é", "x" * 300], "n": [0, -1, 255, 65536, -2 ** 40, 2 ** 80], "f": 1.5,
         "t": (True, False, None), "e": (), "one": (1,), "shared": (shared, shared), "d": {1: {}}}
  for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
    assert safe_pickle.loads(pickle.dumps(obj, protocol=protocol)) == obj
  assert safe_pickle.loads(b"\x80\x02U\x03abcq\x00.") == "abc"  # Python 2 str
  assert safe_pickle.loads(b"S'abc'\np0\n.") == "abc"
  for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
    refused = r"bad\.pkl: refusing to execute pickle opcode \w*GLOBAL at byte"
    with pytest.raises(ValueError, match=refused):
      safe_pickle.loads(pickle.dumps([os.system], protocol=protocol), source="bad.pkl")
  with pytest.raises(ValueError, match="refusing to execute"):
    safe_pickle.loads(pickle.dumps(np.zeros(3)))
  with pytest.raises(ValueError, match="not a readable pickle"):
    safe_pickle.loads(pickle.dumps(obj)[:-20])
  with pytest.raises(ValueError, match="file not found"):
    safe_pickle.load(tmp_path / "missing.pkl")


def _edited_checkpoint(assets, tmp_path, edit):
  state = torch.load(assets["ckpt"], weights_only=True)
  edit(state)
  path = tmp_path / "edited.tar"
  torch.save(state, path)
  return path


def test_import_errors(assets, tmp_path):
  def run(ckpt=None, glove=None, **kw):
    return import_t2m_evaluator(ckpt or assets["ckpt"], glove or assets["glove"], assets["stats"],
                                tmp_path / "out", **kw)

  ckpt = _edited_checkpoint(assets, tmp_path,
                            lambda s: s["motion_encoder"].pop("gru.bias_hh_l0_reverse"))
  with pytest.raises(ValueError, match=r"motion_encoder: missing keys \['gru.bias_hh_l0_reverse'"):
    run(ckpt)
  ckpt = _edited_checkpoint(assets, tmp_path, lambda s: s["text_encoder"].update(
      {"output_net.3.weight": torch.zeros(512, 500)}))
  with pytest.raises(ValueError, match=r"text_encoder.output_net.3.weight: shape \(512, 500\)"):
    run(ckpt)
  ckpt = _edited_checkpoint(assets, tmp_path, lambda s: s.pop("text_encoder"))
  with pytest.raises(ValueError, match=r"missing state dicts \['text_encoder'\]"):
    run(ckpt)
  bad = tmp_path / "global.tar"
  torch.save({"text_encoder": {"x": os.system}}, bad)
  with pytest.raises(ValueError, match="cannot be read as a weights-only torch checkpoint"):
    run(bad)
  with pytest.raises(ValueError, match="dataset 'kit' has 251-d"):
    run(dataset="kit")
  glove = tmp_path / "glove"
  shutil.copytree(assets["glove"], glove)
  with open(glove / "our_vab_words.pkl", "wb") as f:
    pickle.dump([os.system, "unk"], f)
  with pytest.raises(ValueError, match=r"our_vab_words\.pkl: refusing to execute pickle opcode"):
    run(glove=glove)
  assert not (tmp_path / "out").exists()
  run()
  with pytest.raises(FileExistsError, match="overwrite=True"):
    run()
  run(overwrite=True)


def test_load_errors(assets, tmp_path):
  good = _import(assets, "for_errors")
  broken = tmp_path / "broken"
  shutil.copytree(good, broken)
  os.remove(broken / "words.json")
  with pytest.raises(FileNotFoundError, match=r"words\.json: missing"):
    load_evaluator(broken)
  shutil.rmtree(broken)
  shutil.copytree(good, broken)
  with np.load(broken / "params.npz") as npz:
    flat = {k: npz[k] for k in npz.files}
  flat["text_encoder/pos_emb/kernel"] = np.zeros((14, 300), np.float32)
  np.savez(broken / "params.npz", **flat)
  with pytest.raises(ValueError,
                     match=r"text_encoder/pos_emb/kernel: expected \(15, 300\), got \(14, 300\)"):
    load_evaluator(broken)
  evaluator = load_evaluator(good)
  with pytest.raises(ValueError, match="motion 0: 3 frames"):
    evaluator.embed_motions([np.zeros((3, D))])
  with pytest.raises(ValueError, match=r"motion 0: expected features \(T, 263\)"):
    evaluator.embed_motions([np.zeros((40, 251))])


def test_cli_import(assets, capsys):
  from mgpt_jax import cli  # pylint: disable=g-import-not-at-top
  out = assets["root"] / "cli_import"
  args = ["evaluator", "import", "--checkpoint", str(assets["ckpt"]), "--glove-dir",
          str(assets["glove"]), "--stats-dir", str(assets["stats"]), "--out", str(out),
          "--unpacked"]
  assert cli.main(args) == 0
  assert str(out) in capsys.readouterr().out
  assert load_evaluator(out).config.pack_motion is False
  assert cli.main(args) == 2  # exists: refused without --overwrite, with a clear message
  assert "already exists" in capsys.readouterr().err
