// The page of the MJPEG port: the <img> plays /stream; /events (Server-Sent Events, one JSON document per frame)
// fills in the numbers. No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows.map((values) => {
    const tr = document.createElement("tr");
    values.forEach((v) => cell(tr, v));
    return tr;
  }));
}

function show(doc) {
  $("source").textContent = doc.source;
  $("frame").textContent = doc.frame_id;
  $("fps").textContent = doc.fps.toFixed(1);
  fill($("detections").tBodies[0], doc.objects.map((o) => {
    const r = o.relative_coordinates;
    const px = (v, size) => (v === null ? "-" : Math.round(v * size));
    return [o.track_id ?? "", o.name, (o.confidence * 100).toFixed(0) + " %",
            px(r.center_x - r.width / 2, doc.width), px(r.center_y - r.height / 2, doc.height),
            px(r.width, doc.width), px(r.height, doc.height)];
  }));
  const perClass = {};
  doc.objects.forEach((o) => { perClass[o.name] = (perClass[o.name] || 0) + 1; });
  fill($("classes").tBodies[0], Object.entries(perClass).sort());
  if (doc.counting) {
    $("counting").hidden = false;
    const rows = [];
    Object.entries(doc.counting.counts).forEach(([name, counted]) =>
      Object.entries(counted).forEach(([direction, n]) => rows.push([name, direction.replaceAll("_", " "), n])));
    fill($("crossings").tBodies[0], rows);
  }
}

function status(text) {
  $("status").textContent = text;
  $("status").className = text;
}

const events = new EventSource("/events");
events.onopen = () => status("live");
events.onmessage = (e) => show(JSON.parse(e.data));
events.addEventListener("end", () => { status("ended"); events.close(); });
events.onerror = () => { if ($("status").textContent !== "ended") status("disconnected"); };
