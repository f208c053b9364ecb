"""`mgpt demo BUNDLE`: a chat in the browser (Gradio) on top of a MotionGPT bundle.

A typed request becomes an animated skeleton (MP4, the prompt as its title) with
the motion to download as features (.npy), BVH and MP4. An uploaded motion (.npy
features or joints, or a .bvh of any rig) is captioned, continued (prediction) or
completed (in-between); the four tasks are examples to click. Every bad input
becomes a message in the chat, never a stack trace. Requests wait in a queue and
run one at a time (one model, one device), so several users can share the app.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import tempfile
import uuid

import numpy as np

from mgpt_jax.data import formats
from mgpt_jax.data.convert import load_motion_features
from mgpt_jax.data.features import features_to_joints

TASKS = ("Auto", "Text to motion", "Motion to text", "Motion prediction", "Motion in-between")
MAX_PROMPT_CHARS = 400
_PREDICT_WORDS = ("predict", "continue", "continuation", "what comes next", "future")
_INBETWEEN_WORDS = ("in-between", "inbetween", "in between", "middle", "fill")
log = logging.getLogger(__name__)


class UserError(ValueError):
  """A request the app cannot serve; its message is shown in the chat."""


@dataclasses.dataclass
class Reply:
  text: str
  video: str | None = None  # an .mp4 to show
  files: tuple[str, ...] = ()  # downloads
  video_in_chat: bool = True  # a generated motion; a captioned upload is shown beside the chat only


def choose_task(task: str, text: str, motion_path: str | None) -> str:
  """The task a request asks for; 'Auto' reads it off the text and whether a motion came."""
  if task not in TASKS:
    raise UserError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
  if task != "Auto":
    return task
  if not motion_path:
    return "Text to motion"
  lowered = text.lower()
  if any(word in lowered for word in _INBETWEEN_WORDS):
    return "Motion in-between"
  if any(word in lowered for word in _PREDICT_WORDS):
    return "Motion prediction"
  return "Motion to text"


class MotionChat:
  """The app's logic without Gradio: one request in, one Reply out."""

  def __init__(self, system, work_dir: str):
    self.system, self.work_dir = system, work_dir
    self.fps = float(system.config.get("fps", 20.0))
    self.dataset = system.config.get("dataset", "humanml3d")

  def _outputs(self, features: np.ndarray, title: str, reference: np.ndarray | None = None,
               labels=("input", "output")) -> tuple[str, tuple[str, ...]]:
    """Writes motion.npy / .bvh / .mp4 of features (the input beside it when given)."""
    from mgpt_jax.inference.bvh import write_bvh  # pylint: disable=g-import-not-at-top
    from mgpt_jax.inference.render import render_motion  # pylint: disable=g-import-not-at-top
    out = os.path.join(self.work_dir, uuid.uuid4().hex[:12])
    os.makedirs(out)
    joints = features_to_joints(features)
    npy, bvh, mp4 = (os.path.join(out, "motion" + ext) for ext in (".npy", ".bvh", ".mp4"))
    np.save(npy, features.astype(np.float32), allow_pickle=False)
    if self.dataset == "humanml3d":
      write_bvh(bvh, joints, fps=self.fps)
    else:
      bvh = None
    if reference is None:
      render_motion(joints, mp4, fps=self.fps, title=title)
    else:
      render_motion([features_to_joints(reference), joints], mp4, fps=self.fps, title=title,
                    titles=list(labels))
    return mp4, tuple(p for p in (npy, bvh, mp4) if p)

  def _motion(self, path: str | None) -> np.ndarray:
    if not path:
      raise UserError("this task needs a motion: upload a .npy (features or joints) or .bvh file")
    try:
      motion = load_motion_features(path, self.dataset)
    except formats.MotionDataError as e:
      raise UserError(f"{os.path.basename(path)}: {e.reason}") from None
    if len(motion) < 4 * 2:
      raise UserError(f"{os.path.basename(path)}: {len(motion)} frames is too short; give at "
                      "least half a second of motion")
    return motion

  def respond(self, text: str, motion_path: str | None, task: str = "Auto",
              seed: int = 0) -> Reply:
    text = (text or "").strip()
    if len(text) > MAX_PROMPT_CHARS:
      raise UserError(f"the prompt is {len(text)} characters long; keep it under "
                      f"{MAX_PROMPT_CHARS}")
    task = choose_task(task, text, motion_path)
    seed = int(seed or 0)
    if task == "Text to motion":
      if not text:
        raise UserError("type what the person should do, e.g. “a person walks forward and "
                        "waves”")
      (features, codes), = self.system.text_to_motion([text], seed=seed)
      video, files = self._outputs(features, text)
      return Reply(f"“{text}”: {len(features)} frames ({len(features) / self.fps:.1f} s, "
                   f"{len(codes)} motion tokens).", video, files)
    motion = self._motion(motion_path)
    name = os.path.basename(motion_path)
    if task == "Motion to text":
      caption = self.system.motion_to_text([motion])[0] or "(the model gave an empty caption)"
      video, files = self._outputs(motion, caption)
      return Reply(f"{name}: {caption}", video, files, video_in_chat=False)
    complete = self.system.predict if task == "Motion prediction" else self.system.inbetween
    (features, _), = complete([motion], seed=seed)
    label = "prediction" if task == "Motion prediction" else "in-between"
    video, files = self._outputs(features, f"{label} of {name}", reference=motion,
                                 labels=("input", label))
    return Reply(f"{label.capitalize()} of {name}: {len(features)} frames "
                 f"({len(features) / self.fps:.1f} s).", video, files)


def _readable(error: ValueError, with_motion: bool) -> str:
  """The engine's input-length error in the user's terms; anything else as it is."""
  found = re.search(r"is (\d+) tokens.*max_input_length=(\d+)", str(error))
  if not found:
    return str(error)
  what = "the motion (with the instruction)" if with_motion else "the prompt"
  fix = "upload a shorter clip" if with_motion else "shorten the prompt"
  return (f"{what} is too long for this model: {found[1]} tokens, and it reads at most "
          f"{found[2]}; {fix}")


def example_motion(work_dir: str) -> str:
  """A synthetic walk (features .npy) to try the motion tasks with."""
  from mgpt_jax.data.features import joints_to_features  # pylint: disable=g-import-not-at-top
  from mgpt_jax.data.skeletons import HUMANML3D  # pylint: disable=g-import-not-at-top
  from mgpt_jax.data.synthetic import generate_motion  # pylint: disable=g-import-not-at-top
  path = os.path.join(work_dir, "example_walk.npy")
  joints = generate_motion(0, 1, HUMANML3D, actions=["walk", "wave"]).joints[:81]
  np.save(path, joints_to_features(joints, HUMANML3D).astype(np.float32), allow_pickle=False)
  return path


def build_app(system, work_dir: str):
  """The Gradio Blocks of the demo on a loaded MotionGPT."""
  import gradio as gr  # pylint: disable=g-import-not-at-top
  chat = MotionChat(system, work_dir)
  example = example_motion(work_dir)

  def submit(text, motion_file, task, seed, history):
    history = list(history or [])
    user = text.strip() if text and text.strip() else "(no text)"
    if motion_file:
      user += f"  [{os.path.basename(motion_file)}]"
    history.append({"role": "user", "content": user})
    try:
      reply = chat.respond(text, motion_file, task, seed)
    except ValueError as e:  # ours, the data readers' and the engine's (e.g. a prompt too long)
      reply = Reply(f"⚠️ {_readable(e, bool(motion_file))}")
    except Exception as e:  # pylint: disable=broad-except
      log.exception("demo request failed")
      reply = Reply(f"⚠️ something went wrong on the server ({type(e).__name__}); the request "
                    "was not served")
    history.append({"role": "assistant", "content": reply.text})
    if reply.video and reply.video_in_chat:
      history.append({"role": "assistant", "content": gr.Video(reply.video)})
    return history, reply.video, list(reply.files) or None, ""

  with gr.Blocks(title="MotionGPT (JAX) demo") as app:
    gr.Markdown("## MotionGPT — motion as a foreign language\nType what a person should do, "
                "or upload a motion (.npy features/joints or .bvh) to caption, continue or "
                "complete it.")
    with gr.Row():
      with gr.Column(scale=3):
        chatbot = gr.Chatbot(label="chat", elem_id="chat", height=460)
        text = gr.Textbox(label="message", elem_id="message", lines=1,
                          placeholder="a person walks forward and waves with the left hand")
        with gr.Row():
          task = gr.Radio(list(TASKS), value="Auto", label="task", elem_id="task")
          seed = gr.Number(value=0, precision=0, label="seed", elem_id="seed", minimum=0)
        motion = gr.File(label="motion (.npy or .bvh)", elem_id="motion", type="filepath",
                         file_types=[".npy", ".bvh"])
        send = gr.Button("Send", variant="primary", elem_id="send")
      with gr.Column(scale=2):
        video = gr.Video(label="animation", elem_id="video", autoplay=True, loop=True,
                         interactive=False)
        files = gr.File(label="downloads (.npy, .bvh, .mp4)", elem_id="downloads",
                        file_count="multiple", interactive=False)
    gr.Examples(
        examples=[["a person walks forward, then turns around", None, "Text to motion"],
                  ["Describe this motion", example, "Motion to text"],
                  ["Predict how this motion continues", example, "Motion prediction"],
                  ["Fill in the middle of this motion", example, "Motion in-between"]],
        inputs=[text, motion, task], label="the four tasks")
    inputs, outputs = [text, motion, task, seed, chatbot], [chatbot, video, files, text]
    send.click(submit, inputs, outputs)
    text.submit(submit, inputs, outputs)
  return app


def serve(bundle_dir: str, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
  """Loads the bundle and serves the app; returns (app, url) when block is False."""
  from mgpt_jax.inference.motiongpt import MotionGPT  # pylint: disable=g-import-not-at-top
  system = MotionGPT.load(bundle_dir)
  return launch(system, host, port, block)


def launch(system, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
  work_dir = tempfile.mkdtemp(prefix="mgpt_demo_")
  app = build_app(system, work_dir)
  app.queue(max_size=64, default_concurrency_limit=1)
  try:
    _, url, _ = app.launch(server_name=host, server_port=port, allowed_paths=[work_dir],
                           prevent_thread_lock=not block, max_file_size="50mb", quiet=not block,
                           footer_links=[])
  finally:
    if block:
      shutil.rmtree(work_dir, ignore_errors=True)
  app.work_dir = work_dir
  return app, url
