// The DCaS web console: plain browser JavaScript, no library, nothing fetched from outside the node.
// It reads the REST API (/v1) of the node that served it, polling once a second so every panel stays
// live without a reload; the token (when the node needs one) stays in this tab's sessionStorage.

const pollMs = 1000;
const tokenKey = 'dcas-token';
const $ = (selector) => document.querySelector(selector);
let selectedJob = null;

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function bytes(value) {
  if (value === null || value === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let size = value;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit++;
  }
  return `${size.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function authHeaders() {
  const token = sessionStorage.getItem(tokenKey);
  return token ? { authorization: `Bearer ${token}` } : {};
}

class NeedsToken extends Error {}

async function api(path) {
  const response = await fetch(path, { headers: authHeaders(), cache: 'no-store' });
  if (response.status === 401) {
    $('#token-form').hidden = false;
    throw new NeedsToken('this node needs a token');
  }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function renderCluster(status) {
  $('#node-name').textContent = `node ${status.node}`;
  $('#cluster-summary').textContent = `coordinator: ${status.coordinator ?? 'none yet'} · term ${status.term} · ${status.members.length} members`;
  const rows = status.members.map((member) => {
    const row = element('tr');
    row.dataset.member = member.name;
    row.append(
      element('td', member.name + (member.name === status.coordinator ? ' (coordinator)' : '')),
      element('td', member.role),
      element('td', member.raftRole ?? '–'),
      element('td', member.status, `status-${member.status}`),
      element('td', member.load ? `${member.load.inFlight} in flight, ${member.load.queue} queued, ${member.load.workers} workers` : '–'),
    );
    return row;
  });
  $('#members tbody').replaceChildren(...rows);
}

function speed(job) {
  const start = Date.parse(job.timestamps.pending ?? '');
  const end = Date.parse(job.timestamps.completed ?? '') || Date.now();
  const seconds = (end - start) / 1000;
  const size = job.originalSize ?? job.uploadedBytes;
  return seconds > 0 && size > 0 ? `${bytes(size / seconds)}/s` : '–';
}

function nodesText(chunkNodes) {
  const entries = Object.entries(chunkNodes ?? {});
  return entries.length === 0 ? '–' : entries.map(([node, count]) => `${node}: ${count}`).join(', ');
}

function renderJobs(jobs) {
  const rows = jobs.map((job) => {
    const row = element('tr');
    row.dataset.jobId = job.id;
    row.dataset.state = job.state;
    const open = element('button', job.fileName);
    open.type = 'button';
    open.title = `job ${job.id}`;
    open.addEventListener('click', () => selectJob(job.id));
    const downloads = element('td');
    if (job.state === 'completed') {
      for (const form of ['original', 'compressed']) {
        const button = element('button', form);
        button.type = 'button';
        button.dataset.download = form;
        button.addEventListener('click', () => download(job, form));
        downloads.append(button, ' ');
      }
    }
    const fileCell = element('td');
    fileCell.append(open);
    row.append(
      fileCell,
      element('td', job.state, `state-${job.state}`),
      element('td', bytes(job.originalSize ?? job.uploadedBytes)),
      element('td', bytes(job.compressedSize)),
      element('td', job.ratio === null ? '–' : job.ratio.toFixed(3)),
      element('td', speed(job)),
      element('td', nodesText(job.chunkNodes)),
      downloads,
    );
    return row;
  });
  $('#jobs tbody').replaceChildren(...rows);
}

async function renderJob() {
  if (selectedJob === null) return;
  const job = await api(`/v1/jobs/${selectedJob}`);
  $('#job-panel').hidden = false;
  $('#job-title').textContent = `Job ${job.fileName}`;
  $('#job-summary').textContent = `${job.id} · ${job.state} · ${job.chunksDone} of ${job.chunks} chunks coded · ${nodesText(job.chunkNodes)}${job.error ? ` · ${job.error}` : ''}`;
  // Each chunk's record (state, node) while the job runs; a finished job keeps only its per-node counts.
  const records = job.state === 'completed' || job.state === 'failed' ? {} : (await api(`/state?prefix=${encodeURIComponent(`chunks/${job.id}/`)}&limit=10000`)).entries;
  const byIndex = new Map(Object.values(records).map((chunk) => [chunk.index, chunk]));
  const cells = [];
  for (let index = 0; index < job.chunks; index++) {
    const chunk = byIndex.get(index);
    const state = chunk?.state ?? (job.state === 'completed' ? 'done' : 'pending');
    const mark = { done: '✓', assigned: '…', pending: '·', dead: '✗' }[state] ?? '?';
    const cell = element('li', `${mark} ${index}${chunk?.node ? ` ${chunk.node}` : ''}`, `chunk ${state}`);
    cell.title = `chunk ${index}: ${state}${chunk?.node ? ` on ${chunk.node}` : ''}`;
    cells.push(cell);
  }
  $('#chunk-map').replaceChildren(...cells);
}

function selectJob(id) {
  selectedJob = id;
  renderJob().catch(report);
}

async function download(job, form) {
  const response = await fetch(`/v1/jobs/${job.id}/${form}`, { headers: authHeaders() });
  if (!response.ok) return report(new Error(`download of ${job.fileName}: HTTP ${response.status}`));
  const disposition = response.headers.get('content-disposition') ?? '';
  const name = /filename="([^"]*)"/.exec(disposition)?.[1] ?? job.fileName;
  const link = element('a');
  link.href = URL.createObjectURL(await response.blob());
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

function upload(file) {
  const query = new URLSearchParams({ mode: $('#mode').value });
  const chunkKiB = Number($('#chunk-size').value);
  if (chunkKiB > 0) query.set('chunkSize', String(chunkKiB * 1024));
  const request = new XMLHttpRequest();
  request.open('PUT', `/v1/jobs/${encodeURIComponent(file.name)}?${query}`);
  for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
  const progress = $('#upload-progress');
  progress.hidden = false;
  progress.value = 0;
  $('#upload-status').textContent = `uploading ${file.name} (${bytes(file.size)})…`;
  request.upload.addEventListener('progress', (event) => {
    if (event.lengthComputable) progress.value = event.loaded / event.total;
  });
  request.addEventListener('load', () => {
    const body = JSON.parse(request.responseText || '{}');
    if (request.status === 201) {
      progress.value = 1;
      $('#upload-status').textContent = `${file.name} uploaded as job ${body.id}`;
      selectJob(body.id);
    } else {
      if (request.status === 401) $('#token-form').hidden = false;
      $('#upload-status').textContent = `upload of ${file.name} failed: ${body.error?.message ?? `HTTP ${request.status}`}`;
    }
  });
  request.addEventListener('error', () => ($('#upload-status').textContent = `upload of ${file.name} failed: the connection broke`));
  request.send(file);
}

function report(error) {
  if (!(error instanceof NeedsToken)) $('#upload-status').textContent = error.message;
}

async function refresh() {
  try {
    renderCluster(await api('/v1/cluster'));
    renderJobs((await api('/v1/jobs?limit=100')).jobs);
    await renderJob();
  } catch (error) {
    report(error);
  }
}

$('#file').addEventListener('change', (event) => {
  if (event.target.files.length > 0) upload(event.target.files[0]);
});
const zone = $('#drop-zone');
zone.addEventListener('dragover', (event) => {
  event.preventDefault();
  zone.classList.add('over');
});
zone.addEventListener('dragleave', () => zone.classList.remove('over'));
zone.addEventListener('drop', (event) => {
  event.preventDefault();
  zone.classList.remove('over');
  if (event.dataTransfer.files.length > 0) upload(event.dataTransfer.files[0]);
});
$('#token-open').addEventListener('click', () => ($('#token-form').hidden = false));
$('#token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  sessionStorage.setItem(tokenKey, $('#token').value.trim());
  $('#token-form').hidden = true;
  refresh();
});

refresh();
setInterval(refresh, pollMs);
