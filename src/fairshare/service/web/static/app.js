// Small progressive enhancement: draw the server's Plotly specs; re-run what-ifs as you type.
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("[data-figure]")) {
    if (!window.Plotly) break;
    const fig = JSON.parse(el.dataset.figure);
    window.Plotly.newPlot(el, fig.data, fig.layout, {responsive: true, displaylogo: false});
  }
  for (const form of document.querySelectorAll("form[data-autosubmit]")) {
    let timer = null;
    const go = () => { clearTimeout(timer); timer = setTimeout(() => form.requestSubmit(), 600); };
    form.addEventListener("change", go);
  }
});
