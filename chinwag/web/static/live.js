// The operators' live page: polls the figures' JSON and draws each chart as an SVG
// polyline over the window of samples the server keeps (the newest is of this moment).
"use strict";

(() => {
  const root = document.getElementById("live");
  const source = root.dataset.source;
  const pollMs = Number(root.dataset.pollMs) || 2000;
  const status = document.getElementById("live-status");

  // Each series of a chart, by its data-series name: its value at each sample, given
  // the sample before it (null for the first sample of a rate).
  const perSecond = (count) => (sample, before) =>
    before ? Math.max(0, count(sample) - count(before)) / Math.max(0.001, sample.time - before.time) : null;
  const perMinute = (count) => {
    const rate = perSecond(count);
    return (sample, before) => (before ? rate(sample, before) * 60 : null);
  };
  const SERIES = {
    sessions: (sample) => sample.sessions,
    stanzas: perSecond((s) => s.stanzas_in + s.stanzas_out),
    sign_ins: perMinute((s) => s.sign_ins),
    sign_in_failures: perMinute((s) => s.sign_in_failures),
    lag: (sample) => sample.lag_seconds * 1000,
  };
  const FORMAT = {
    sessions: (v) => String(v),
    stanzas: (v) => `${v.toFixed(1)}/s`,
    sign_ins: (v) => `${v.toFixed(1)}/min`,
    lag: (v) => `${v.toFixed(2)} ms`,
  };

  function values(name, samples) {
    const value = SERIES[name];
    return samples
      .map((sample, i) => ({ time: sample.time, value: value(sample, samples[i - 1]) }))
      .filter((point) => point.value !== null);
  }

  function draw(chart, samples) {
    const key = chart.id.replace("chart-", "");
    const lines = [...chart.querySelectorAll("polyline")].map((line) => ({
      line,
      points: values(line.dataset.series, samples),
    }));
    const all = lines.flatMap((each) => each.points);
    if (all.length === 0) return;
    const first = samples[0].time;
    const span = Math.max(1, samples[samples.length - 1].time - first);
    const top = Math.max(1, ...all.map((p) => p.value)) * 1.1;
    for (const { line, points } of lines) {
      line.setAttribute(
        "points",
        points
          .map((p) => `${(((p.time - first) / span) * 300).toFixed(1)},${(79 - (p.value / top) * 77).toFixed(1)}`)
          .join(" "),
      );
    }
    const main = lines[0].points;
    const latest = main.length ? main[main.length - 1].value : 0;
    let now = FORMAT[key](latest);
    if (lines.length > 1) {
      const failed = lines[1].points;
      now += `, failed ${FORMAT[key](failed.length ? failed[failed.length - 1].value : 0)}`;
    }
    document.getElementById(`now-${key}`).textContent = now;
    document.getElementById(`scale-${key}`).textContent =
      `Top of the chart: ${FORMAT[key](top)}; the last ${Math.round(span / 60)} min.`;
  }

  async function poll() {
    try {
      const response = await fetch(source, { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      const { samples } = await response.json();
      for (const chart of root.querySelectorAll("section.chart")) draw(chart, samples);
      status.textContent = `Updated at ${new Date().toLocaleTimeString()}.`;
    } catch (error) {
      status.textContent = `The figures could not be fetched: ${error.message}.`;
    }
  }

  poll();
  setInterval(poll, pollMs);
})();
