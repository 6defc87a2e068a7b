// Small page helpers, no framework: print buttons and the webcam photo on the patient chart.
// Works without it: the file input uploads photos and the browser's menu prints.
(function () {
  "use strict";

  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.addEventListener("click", function () { window.print(); });
  });

  var box = document.querySelector("[data-webcam]");
  if (!box) { return; }
  var start = box.querySelector("[data-webcam-start]");
  var video = box.querySelector("[data-webcam-video]");
  var capture = box.querySelector("[data-webcam-capture]");
  var status = box.querySelector("[data-webcam-status]");
  var stream = null;

  if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia) || !window.fetch) {
    return; // no camera API: the file input is all there is
  }
  box.hidden = false;

  function say(text) { status.textContent = text; }

  start.addEventListener("click", function () {
    navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false })
      .then(function (s) {
        stream = s;
        video.srcObject = s;
        video.hidden = false;
        capture.hidden = false;
        start.hidden = true;
        capture.focus();
      })
      .catch(function () { say(box.dataset.noCamera); });
  });

  capture.addEventListener("click", function () {
    var canvas = document.createElement("canvas");
    canvas.width = video.videoWidth || 640;
    canvas.height = video.videoHeight || 480;
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    canvas.toBlob(function (blob) {
      if (!blob) { say(box.dataset.failed); return; }
      var data = new FormData();
      data.append("csrf_token", box.dataset.csrf);
      data.append("photo", blob, "webcam.jpg");
      capture.disabled = true;
      fetch(box.dataset.upload, {
        method: "POST", body: data, credentials: "same-origin",
        headers: { "X-Requested-With": "fetch", "X-CSRFToken": box.dataset.csrf }
      }).then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      }).then(function (result) {
        if (result.ok) {
          if (stream) { stream.getTracks().forEach(function (t) { t.stop(); }); }
          window.location.assign(result.body.location || window.location.href);
        } else {
          capture.disabled = false;
          say(result.body.message || box.dataset.failed);
        }
      }).catch(function () { capture.disabled = false; say(box.dataset.failed); });
    }, "image/jpeg", 0.85);
  });
})();
