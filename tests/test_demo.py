"""`mgpt demo`: the Gradio app's logic, and the app itself driven in headless Chromium.

The browser test needs Debian's chromium + chromium-driver (.ci/run installs them) and
selenium; it skips with the reason where they are missing. Set MGPT_DEMO_SCREENSHOTS to a
directory to keep its screenshots (the README's come from there).
"""
import os
import shutil
import socket
import time

import numpy as np
import pytest

from mgpt_jax import cli
from mgpt_jax.data.skeletons import HUMANML3D
from mgpt_jax.data.synthetic import generate_motion

gr = pytest.importorskip("gradio", reason="the demo needs gradio (pip install -e '.[demo]')")
from mgpt_jax.demo import app as demo  # pylint: disable=g-import-not-at-top,wrong-import-position

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def walk_joints(tmp_path_factory):
  """A 2 s synthetic walk as joints (T, 22, 3) .npy: short enough for the tiny model's encoder."""
  path = tmp_path_factory.mktemp("motions") / "walk_joints.npy"
  np.save(path, generate_motion(0, 3, HUMANML3D, actions=["walk"]).joints[:41].astype(np.float32))
  return str(path)


def test_choose_task():
  assert demo.choose_task("Auto", "a person walks", None) == "Text to motion"
  assert demo.choose_task("Auto", "", "m.npy") == "Motion to text"
  assert demo.choose_task("Auto", "Predict what comes next", "m.npy") == "Motion prediction"
  assert demo.choose_task("Auto", "fill in the middle", "m.bvh") == "Motion in-between"
  assert demo.choose_task("Motion to text", "walk", "m.npy") == "Motion to text"
  with pytest.raises(demo.UserError, match="unknown task"):
    demo.choose_task("dance", "", None)


def test_chat_answers_every_task_and_refuses_bad_input(tiny_system, walk_joints, tmp_path):
  chat = demo.MotionChat(tiny_system[3], str(tmp_path))
  reply = chat.respond("a person walks", None)
  assert reply.video.endswith(".mp4") and os.path.getsize(reply.video) > 0
  assert sorted(os.path.splitext(f)[1] for f in reply.files) == [".bvh", ".mp4", ".npy"]
  assert chat.respond("", walk_joints, "Motion to text").text.startswith("walk_joints.npy: ")
  for task in ("Motion prediction", "Motion in-between"):
    reply = chat.respond("", walk_joints, task)
    assert reply.video and os.path.getsize(reply.video) > 0
  bad = tmp_path / "bad.npy"
  np.save(bad, np.zeros((10, 5), np.float32))
  for args, match in [(("", None), "type what the person should do"),
                      (("x" * 500, None), "500 characters"),
                      (("", None, "Motion to text"), "needs a motion"),
                      (("", str(bad)), r"bad\.npy: has 5-d features; expected 263-d")]:
    with pytest.raises(demo.UserError, match=match):
      chat.respond(*args)


def test_cli_demo_refuses_a_missing_bundle(tmp_path, capsys):
  assert cli.main(["demo", str(tmp_path / "nope")]) == 2
  assert "nope" in capsys.readouterr().err


# --------------------------------------------------------------------------- the browser


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser(tiny_system):
  if not (CHROMIUM and DRIVER):
    pytest.skip("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
  webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium")
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  app, url = demo.launch(tiny_system[3], port=_free_port(), block=False)
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--mute-audio",
               "--window-size=1400,1500", "--autoplay-policy=no-user-gesture-required"):
    options.add_argument(flag)
  driver = webdriver.Chrome(service=Service(DRIVER), options=options)
  driver.set_page_load_timeout(60)
  try:
    driver.get(url)
    _wait(lambda: driver.find_elements("css selector", "#message textarea"), "the page", 60)
    yield driver, url
  finally:
    driver.quit()
    app.close()
    shutil.rmtree(app.work_dir, ignore_errors=True)


def _wait(condition, what: str, timeout: float = 90.0):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    value = condition()
    if value:
      return value
    time.sleep(0.25)
  raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _shot(driver, tmp_path, name: str) -> None:
  driver.execute_script("window.scrollTo(0, 0)")
  driver.save_screenshot(str(tmp_path / name))
  keep = os.environ.get("MGPT_DEMO_SCREENSHOTS")
  if keep:
    os.makedirs(keep, exist_ok=True)
    shutil.copy(tmp_path / name, os.path.join(keep, name))


_BOT_TEXTS = ("return Array.from(document.querySelectorAll('#chat .message.bot'))"
              ".map(e => e.innerText);")


def _send(driver, text: str = "", motion: str | None = None) -> int:
  """Types `text`, attaches `motion` (clearing any earlier file), sends; returns the bot count."""
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  before = len(driver.execute_script(_BOT_TEXTS))
  clear = driver.find_elements(By.CSS_SELECTOR, "#motion button[aria-label='Clear']")
  if clear:
    clear[0].click()
  if motion:
    _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#motion input[type=file]"), "file input")
    driver.find_element(By.CSS_SELECTOR, "#motion input[type=file]").send_keys(motion)
    name = os.path.basename(motion)
    _wait(lambda: name in "".join(driver.find_element(By.CSS_SELECTOR, "#motion").text.split()),
          "the upload")  # the name is shown as stem and extension on two lines
  box = driver.find_element(By.CSS_SELECTOR, "#message textarea")
  box.clear()
  box.send_keys(text)
  # Gradio renders the page in parts: on a loaded machine the button can follow the textbox.
  _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#send"), "the send button")[0].click()
  return before


def _reply(driver, before: int, expected: str) -> str:
  """The first assistant message after the first `before` that contains `expected`."""
  def reply():  # read in one script: the chat re-renders, so elements held across calls go stale
    texts = driver.execute_script(_BOT_TEXTS)
    return next((t.strip() for t in texts[before:] if expected in t), None)
  return _wait(reply, f"an assistant message with {expected!r}")


def test_browser_prompt_plays_a_video(browser, tmp_path):
  driver, _ = browser
  before = _send(driver, "a person walks")
  assert "4 frames (0.2 s, 1 motion tokens)" in _reply(driver, before, "a person walks")
  script = ("const v = document.querySelector('#video video');"
            "return v && v.readyState >= 1 ? [v.duration, v.paused, v.currentTime] : null;")
  duration, _, _ = _wait(lambda: driver.execute_script(script), "the video's metadata")
  assert duration > 0
  driver.execute_script("const v = document.querySelector('#video video'); v.muted = true;"
                        "v.loop = true; v.play();")
  _wait(lambda: driver.execute_script(script)[2] > 0, "the video to play")
  downloads = "".join(driver.find_element("css selector", "#downloads").text.split())
  assert all(f"motion.{ext}" in downloads for ext in ("npy", "bvh", "mp4")), downloads
  _shot(driver, tmp_path, "demo_text_to_motion.png")


def test_browser_uploaded_motion_gets_a_caption(browser, walk_joints, tmp_path):
  driver, _ = browser
  before = _send(driver, "", walk_joints)
  reply = _reply(driver, before, "walk_joints.npy: ")
  assert reply.startswith("walk_joints.npy: ") and len(reply) > len("walk_joints.npy: ")
  _shot(driver, tmp_path, "demo_caption.png")


def test_browser_bad_inputs_become_messages(browser, tmp_path):
  driver, _ = browser
  bad = tmp_path / "not_a_motion.npy"
  np.save(bad, np.zeros((10, 5), np.float32))
  before = _send(driver, "", str(bad))
  reply = _reply(driver, before, "not_a_motion.npy")
  assert "not_a_motion.npy: has 5-d features; expected 263-d" in reply and "Traceback" not in reply
  before = _send(driver, "a person walks forward, then turns around and sits down")
  reply = _reply(driver, before, "⚠️")
  assert reply.startswith("⚠️ the prompt is too long for this model: ") and "at most 48" in reply
  _shot(driver, tmp_path, "demo_errors.png")


def test_browser_two_users_share_the_queue(browser):
  """Two tabs send at once; the queue answers both."""
  driver, url = browser
  first = driver.current_window_handle
  driver.switch_to.new_window("tab")
  driver.get(url)
  _wait(lambda: driver.find_elements("css selector", "#message textarea"), "the second page")
  second_before = _send(driver, "a person jumps")
  driver.switch_to.window(first)
  first_before = _send(driver, "a person runs")
  assert "motion tokens" in _reply(driver, first_before, "a person runs")
  driver.switch_to.window(driver.window_handles[-1])
  assert "motion tokens" in _reply(driver, second_before, "a person jumps")
  driver.close()
  driver.switch_to.window(first)
