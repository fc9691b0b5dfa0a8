// Attachments on the room page (docs/protocol.md "Attachments"). Two parts:
// - buildAttachments(list): a message's attachments from their wire form, the markup of
//   templates/attachments/_attachments.html (an image as its thumbnail, any other file as a
//   card with name, size and type); user text only through textContent.
// - attach({composer, showError}): the composer's files. A button, paste and drag-and-drop add
//   files; each is uploaded at once by its own HTTP request (XMLHttpRequest, for its upload
//   progress), with a progress bar and a cancel button; the send then names the ids
//   (ready()). The socket never carries the bytes.
// And the lightbox: a click on an image opens the full picture in a <dialog>.
(function () {
  "use strict";

  function formatSize(bytes) {
    if (bytes < 1024) return `${bytes} bytes`;
    const units = ["KB", "MB", "GB"];
    let size = bytes / 1024;
    let unit = 0;
    while (size >= 1024 && unit < units.length - 1) { size /= 1024; unit += 1; }
    return `${size.toFixed(1)} ${units[unit]}`;
  }

  function buildAttachment(a) {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = a.url;
    if (a.thumb_url) {
      li.className = "attachment attachment--image";
      link.className = "attachment__image";
      link.dataset.action = "lightbox";
      link.dataset.name = a.name;
      const img = document.createElement("img");
      img.src = a.thumb_url;
      img.alt = a.name;
      if (a.width) { img.width = a.width; img.height = a.height; }
      img.loading = "lazy";
      link.append(img);
    } else {
      li.className = "attachment attachment--file";
      link.className = "attachment__card";
      link.setAttribute("download", "");
      const name = document.createElement("span");
      name.className = "attachment__name";
      name.textContent = a.name;
      const meta = document.createElement("span");
      meta.className = "attachment__meta";
      meta.textContent = `${formatSize(a.size)} · ${a.type}`;
      link.append(name, " ", meta);
    }
    li.append(link);
    return li;
  }

  function buildAttachments(list) {
    const ul = document.createElement("ul");
    ul.className = "attachments";
    ul.setAttribute("aria-label", "Attachments");
    list.forEach((a) => ul.append(buildAttachment(a)));
    return ul;
  }

  // --- The lightbox ----------------------------------------------------------

  let lightbox = null;
  function openLightbox(link) {
    if (!lightbox) {
      lightbox = document.createElement("dialog");
      lightbox.className = "lightbox";
      lightbox.setAttribute("aria-label", "Image");
      const img = document.createElement("img");
      const bar = document.createElement("p");
      bar.className = "lightbox__bar";
      const open = document.createElement("a");
      open.className = "lightbox__open";
      open.textContent = "Open the original";
      open.target = "_blank";
      open.rel = "noopener";
      const close = document.createElement("button");
      close.type = "button";
      close.className = "button button--small";
      close.textContent = "Close";
      close.addEventListener("click", () => lightbox.close());
      bar.append(open, " ", close);
      lightbox.append(img, bar);
      lightbox.addEventListener("click", (event) => { if (event.target === lightbox) lightbox.close(); });
      document.body.append(lightbox);
    }
    const img = lightbox.querySelector("img");
    img.src = link.href;
    img.alt = link.dataset.name || "";
    lightbox.querySelector(".lightbox__open").href = link.href;
    lightbox.showModal();
  }

  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("a[data-action=lightbox]");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    openLightbox(link);
  });

  // --- The composer's files ---------------------------------------------------

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const found = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
    return found ? decodeURIComponent(found.split("=")[1]) : "";
  }

  function attach({ composer, dropZone, showError }) {
    const url = composer.dataset.uploadUrl;
    const maxFiles = Number(composer.dataset.maxAttachments) || 10;
    const input = composer.querySelector("input[type=file]");
    const button = composer.querySelector("[data-action=attach]");
    const tray = document.createElement("ul");
    tray.className = "uploads";
    tray.setAttribute("aria-label", "Files to send");
    tray.hidden = true;
    composer.before(tray);
    const uploads = []; // {file, xhr, li, wire, done}

    function refresh() { tray.hidden = uploads.length === 0; }

    function remove(upload) {
      if (upload.xhr && !upload.done) upload.xhr.abort();
      upload.li.remove();
      uploads.splice(uploads.indexOf(upload), 1);
      refresh();
    }

    function start(file) {
      if (uploads.length >= maxFiles) {
        showError(`A message has at most ${maxFiles} attachments.`);
        return;
      }
      const li = document.createElement("li");
      li.className = "upload";
      const name = document.createElement("span");
      name.className = "upload__name";
      name.textContent = file.name || "pasted image";
      const bar = document.createElement("progress");
      bar.className = "upload__progress";
      bar.max = 100;
      bar.value = 0;
      bar.setAttribute("aria-label", `Uploading ${name.textContent}`);
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.className = "link-button upload__cancel";
      cancel.textContent = "Cancel";
      cancel.setAttribute("aria-label", `Remove ${name.textContent}`);
      li.append(name, " ", bar, " ", cancel);
      tray.append(li);
      const upload = { file, li, xhr: new XMLHttpRequest(), wire: null, done: false };
      uploads.push(upload);
      refresh();
      cancel.addEventListener("click", () => remove(upload));
      const xhr = upload.xhr;
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) bar.value = Math.round((event.loaded / event.total) * 100);
      });
      xhr.addEventListener("load", () => {
        upload.done = true;
        let answer = null;
        try { answer = JSON.parse(xhr.responseText); } catch (error) { answer = null; }
        if (xhr.status === 201 && answer) {
          upload.wire = answer;
          bar.value = 100;
          li.classList.add("upload--done");
          cancel.textContent = "Remove";
        } else {
          const detail = answer && answer.error ? answer.error.detail : `The upload failed (${xhr.status}).`;
          showError(`${name.textContent}: ${detail}`);
          remove(upload);
        }
      });
      xhr.addEventListener("error", () => {
        upload.done = true;
        showError(`${name.textContent}: the upload failed; check the connection.`);
        remove(upload);
      });
      const form = new FormData();
      form.append("file", file, file.name || "pasted-image.png");
      xhr.open("POST", url);
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      xhr.send(form);
    }

    function addFiles(files) { Array.from(files || []).forEach(start); }

    button.addEventListener("click", () => input.click());
    input.addEventListener("change", () => { addFiles(input.files); input.value = ""; });
    composer.addEventListener("paste", (event) => {
      const files = event.clipboardData ? event.clipboardData.files : null;
      if (files && files.length) {
        event.preventDefault();
        addFiles(files);
      }
    });
    const zone = dropZone || composer;
    zone.addEventListener("dragover", (event) => {
      if (event.dataTransfer && Array.from(event.dataTransfer.types).includes("Files")) {
        event.preventDefault();
        zone.classList.add("drop-target");
      }
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("drop-target"));
    zone.addEventListener("drop", (event) => {
      zone.classList.remove("drop-target");
      if (event.dataTransfer && event.dataTransfer.files.length) {
        event.preventDefault();
        addFiles(event.dataTransfer.files);
      }
    });

    return {
      // Still uploading: the send waits (the composer says so).
      busy: () => uploads.some((u) => !u.done),
      // The wire forms of the finished uploads, in the order added.
      ready: () => uploads.filter((u) => u.wire).map((u) => u.wire),
      // After a send: the tray empties (the files went with the message).
      clear() {
        uploads.slice().forEach((u) => { u.li.remove(); });
        uploads.length = 0;
        refresh();
      },
    };
  }

  window.PubSubUploads = { buildAttachments, attach, formatSize };
})();
