// Level meters: one canvas per input, horizontal bars (they fit a phone's width), dBFS scale
// -60..0. The server sends levels ~20 times a second; we redraw only when new levels arrive
// or while a bar is still falling, so an idle page costs nothing.

const FLOOR = -60;
const TICKS = [0, -6, -12, -18, -24, -30, -40, -50, -60];
const FALL_DB_PER_S = 24; // bar fall-back, like a PPM's return
const HOLD_MS = 1500; // peak-hold marker stays this long before falling
const ROW = 14;
const GAP = 6;
const LABEL_W = 26;
const SCALE_H = 18;

// Zone colours: green for normal programme, amber near alignment +12 dB, red near clipping.
// Colour is never the only signal: the numbers are printed next to the canvas.
const ZONES = [
  [FLOOR, -18, '#2fbf71'],
  [-18, -6, '#e8c547'],
  [-6, 0, '#ff5a5a'],
];

export const fmtDb = (v) => (v <= -150 ? '−∞' : v.toFixed(1).replace('-', '−'));

export class MeterView {
  constructor(root) {
    this.root = root;
    this.canvas = document.createElement('canvas');
    this.canvas.setAttribute('role', 'img');
    this.canvas.className = 'meter-canvas';
    this.readout = document.createElement('table');
    this.readout.className = 'readout';
    this.loud = document.createElement('p');
    this.loud.className = 'loudness';
    root.append(this.canvas, this.readout, this.loud);
    this.channels = []; // {peak, rms, tp, hold, holdAt, tPeak, tRms, tTp}
    this.labels = [];
    this.last = 0;
    this.textAt = 0;
    this.frame = 0;
    this.ctx = this.canvas.getContext('2d');
    // Redraw at the new size when the layout changes (rotation, window resize).
    new ResizeObserver(() => this.resize()).observe(this.canvas);
  }

  setLabels(labels) {
    this.labels = labels || [];
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const w = this.canvas.clientWidth;
    const h = this.height();
    this.canvas.style.height = `${h}px`;
    this.canvas.width = Math.max(1, Math.round(w * dpr));
    this.canvas.height = Math.round(h * dpr);
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this.draw();
  }

  height() {
    return Math.max(1, this.channels.length) * (ROW + GAP) + SCALE_H;
  }

  // New levels from the server (one InputMeters).
  update(m) {
    const now = performance.now();
    const n = m.channels.length;
    if (n !== this.channels.length) {
      this.channels = m.channels.map(() => ({ peak: FLOOR, rms: FLOOR, tp: FLOOR, hold: FLOOR, holdAt: 0 }));
      this.resize();
    }
    m.channels.forEach((c, i) => {
      const s = this.channels[i];
      s.tPeak = c.peak;
      s.tRms = c.rms;
      s.tTp = c.true_peak;
      if (c.peak >= s.hold) {
        s.hold = c.peak;
        s.holdAt = now;
      }
    });
    this.meters = m;
    // Text at 4 Hz: figures changing 20 times a second cannot be read.
    if (now - this.textAt > 250) {
      this.textAt = now;
      this.renderText(m);
    }
    this.canvas.setAttribute('aria-label', this.describe(m));
    this.kick();
  }

  kick() {
    if (!this.frame) this.frame = requestAnimationFrame((t) => this.tick(t));
  }

  // Rise instantly, fall at FALL_DB_PER_S; keep animating only while something moves.
  tick(t) {
    this.frame = 0;
    const dt = this.last ? Math.min(0.2, (t - this.last) / 1000) : 0;
    this.last = t;
    let moving = false;
    const fall = FALL_DB_PER_S * dt;
    for (const s of this.channels) {
      for (const [k, tk] of [['peak', 'tPeak'], ['rms', 'tRms'], ['tp', 'tTp']]) {
        const target = Math.max(FLOOR, s[tk] ?? FLOOR);
        if (target >= s[k]) s[k] = target;
        else {
          s[k] = Math.max(target, s[k] - fall);
          if (s[k] > target) moving = true;
        }
      }
      if (t - s.holdAt > HOLD_MS && s.hold > s.peak) {
        s.hold = Math.max(s.peak, s.hold - fall);
        moving = true;
      }
    }
    this.draw();
    if (moving) this.kick();
    else this.last = 0;
  }

  draw() {
    const ctx = this.ctx;
    const w = this.canvas.clientWidth;
    const h = this.height();
    const x0 = LABEL_W;
    const span = Math.max(1, w - x0 - 8);
    const x = (db) => x0 + (Math.min(0, Math.max(FLOOR, db)) - FLOOR) / -FLOOR * span;
    ctx.clearRect(0, 0, w, h);
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    this.channels.forEach((s, i) => {
      const y = i * (ROW + GAP);
      ctx.fillStyle = '#9fb3c8';
      ctx.textAlign = 'left';
      ctx.fillText(this.labels[i] || String(i + 1), 2, y + ROW / 2, LABEL_W - 4);
      ctx.fillStyle = '#1a2633';
      ctx.fillRect(x0, y, span, ROW);
      // Peak: the full-height bar, dimmed; RMS: the bright core.
      this.zones(x, s.peak, y, ROW, 0.45);
      this.zones(x, s.rms, y + ROW / 4, ROW / 2, 1);
      if (s.hold > FLOOR) {
        ctx.fillStyle = s.hold > -6 ? '#ff5a5a' : '#e6edf3';
        ctx.fillRect(x(s.hold) - 1, y, 2, ROW);
      }
      // True peak: a small triangle above the bar; red from -1 dBTP (the EBU R128 ceiling).
      if (s.tp > FLOOR) {
        ctx.fillStyle = s.tp > -1 ? '#ff5a5a' : '#4fc3f7';
        const tx = x(s.tp);
        ctx.beginPath();
        ctx.moveTo(tx - 4, y - 1);
        ctx.lineTo(tx + 4, y - 1);
        ctx.lineTo(tx, y + 5);
        ctx.fill();
      }
    });
    const ys = this.channels.length * (ROW + GAP);
    ctx.fillStyle = '#9fb3c8';
    ctx.strokeStyle = '#5b6f84';
    ctx.textAlign = 'center';
    for (const t of TICKS) {
      const tx = Math.round(x(t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(tx, ys - GAP + 1);
      ctx.lineTo(tx, ys + 3);
      ctx.stroke();
      ctx.fillText(String(t), Math.min(w - 8, Math.max(x0 + 6, tx)), ys + 11);
    }
  }

  zones(x, level, y, hgt, alpha) {
    const ctx = this.ctx;
    ctx.globalAlpha = alpha;
    for (const [lo, hi, colour] of ZONES) {
      if (level <= lo) break;
      ctx.fillStyle = colour;
      ctx.fillRect(x(lo), y, x(Math.min(level, hi)) - x(lo), hgt);
    }
    ctx.globalAlpha = 1;
  }

  describe(m) {
    return m.channels
      .map((c, i) => `Channel ${this.labels[i] || i + 1}: peak ${fmtDb(c.peak)} dBFS, RMS ${fmtDb(c.rms)} dBFS`)
      .join('; ');
  }

  // The numbers, with raw values in data attributes for scripts and tests.
  renderText(m) {
    const t = this.readout;
    if (t.rows.length !== m.channels.length + 1) {
      t.replaceChildren();
      const head = t.createTHead().insertRow();
      for (const label of ['Ch', 'Peak dBFS', 'RMS dBFS', 'TP dBTP', 'Max dBTP']) {
        const th = document.createElement('th');
        th.scope = 'col';
        th.textContent = label;
        head.append(th);
      }
      const body = t.createTBody();
      m.channels.forEach(() => {
        const r = body.insertRow();
        r.className = 'channel-level';
        const th = document.createElement('th');
        th.scope = 'row';
        r.append(th);
        for (let k = 0; k < 4; k++) r.insertCell();
      });
    }
    m.channels.forEach((c, i) => {
      const r = t.tBodies[0].rows[i];
      r.dataset.channel = String(i + 1);
      r.dataset.peak = c.peak.toFixed(2);
      r.dataset.rms = c.rms.toFixed(2);
      r.dataset.truePeak = c.true_peak.toFixed(2);
      r.cells[0].textContent = this.labels[i] || String(i + 1);
      r.cells[1].textContent = fmtDb(c.peak);
      r.cells[2].textContent = fmtDb(c.rms);
      r.cells[3].textContent = fmtDb(c.true_peak);
      r.cells[4].textContent = fmtDb(c.true_peak_max);
      r.cells[3].classList.toggle('over', c.true_peak > -1);
    });
    this.loud.replaceChildren();
    for (const g of m.loudness || []) {
      const span = document.createElement('span');
      span.className = 'lufs';
      const chans = g.channels > 1 ? `ch ${g.first_channel}–${g.first_channel + g.channels - 1}` : `ch ${g.first_channel}`;
      span.textContent = `R128 ${chans}: M ${fmtDb(g.momentary)} · S ${fmtDb(g.short_term)} · I ${fmtDb(g.integrated)} LUFS · LRA ${g.range.toFixed(1)} LU`;
      span.dataset.integrated = g.integrated.toFixed(2);
      this.loud.append(span);
    }
    for (const p of m.pairs || []) {
      if (p.correlation == null) continue;
      const span = document.createElement('span');
      span.className = 'lufs';
      span.textContent = `Phase ${p.first_channel}/${p.first_channel + 1}: ${p.correlation.toFixed(2)}`;
      this.loud.append(span);
    }
  }
}
