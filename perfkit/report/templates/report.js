// The report's own script: no library, no network. Sort and filter the summary, open a collapsed
// section a link points into, and keep chart labels from covering each other.
(function () {
  const table = document.getElementById("summary-table");
  if (table) {
    const body = table.tBodies[0];
    const key = (row, i) => {
      const cell = row.cells[i], v = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent.trim();
      const n = parseFloat(v);
      return v === "" || isNaN(n) ? v.toLowerCase() : n;
    };
    table.querySelectorAll("thead th").forEach((th, i) => th.addEventListener("click", () => {
      const dir = th.dataset.dir = th.dataset.dir === "asc" ? "desc" : "asc";
      table.querySelectorAll("thead th").forEach(o => { if (o !== th) delete o.dataset.dir; });
      [...body.rows].sort((a, b) => {
        const x = key(a, i), y = key(b, i);
        if (typeof x !== typeof y) return typeof x === "number" ? -1 : 1;  // unmeasured last either way
        return (x < y ? -1 : x > y ? 1 : 0) * (dir === "asc" ? 1 : -1);
      }).forEach(r => body.appendChild(r));
    }));
    const filter = document.getElementById("summary-filter");
    filter.addEventListener("input", () => {
      const terms = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      for (const r of body.rows) r.hidden = !terms.every(t => r.textContent.toLowerCase().includes(t));
    });
    const all = document.getElementById("summary-all");
    all.addEventListener("change", () => table.classList.toggle("all", all.checked));
  }
  const openTarget = () => {
    let e = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
    for (; e; e = e.parentElement) if (e.tagName === "DETAILS") e.open = true;
  };
  window.addEventListener("hashchange", openTarget);
  openTarget();
  // A label overlapping one already kept is hidden (its point still names itself on hover); the chosen
  // variants (★) are kept first.
  const unclutter = g => {
    const labels = [...g.querySelectorAll("g.textpoint text, text.bartext")].filter(t => t.textContent);
    labels.sort((a, b) => b.textContent.includes("★") - a.textContent.includes("★"));
    const kept = [];
    for (const t of labels) {
      t.style.display = "";
      const r = t.getBoundingClientRect();
      if (!r.width) continue;
      const hit = kept.some(k => r.left < k.right && k.left < r.right && r.top < k.bottom && k.top < r.bottom);
      if (hit) t.style.display = "none"; else kept.push(r);
    }
  };
  document.querySelectorAll(".plotly-graph-div").forEach(g => {
    if (g.on) g.on("plotly_afterplot", () => unclutter(g));
    unclutter(g);
  });
  document.querySelectorAll("details").forEach(d => d.addEventListener("toggle", () => {
    if (d.open) d.querySelectorAll(".plotly-graph-div").forEach(g => { Plotly.Plots.resize(g); unclutter(g); });
  }));
})();
