// Draws the usage dashboard's charts from the JSON the page embeds (#usage-data).
(function () {
  const data = JSON.parse(document.getElementById("usage-data").textContent);
  // Axis text and grid lines in the page's colours (light or dark theme).
  const page = getComputedStyle(document.documentElement);
  Chart.defaults.color = page.getPropertyValue("--muted").trim();
  Chart.defaults.borderColor = page.getPropertyValue("--line").trim();
  const palette = ["#3b5bdb", "#f08c00", "#2f9e44", "#c2255c", "#7048e8", "#1098ad", "#e8590c", "#5c940d"];
  const common = { responsive: true, maintainAspectRatio: false, animation: false };
  // Days come as ISO dates; shown in the app's format ("9 Nov", "9 Nov 2026" in tooltips).
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const dayLabel = (iso, withYear) => {
    const [year, month, day] = iso.split("-").map(Number);
    return `${day} ${MONTHS[month - 1]}` + (withYear ? ` ${year}` : "");
  };
  const days = {
    ticks: { callback: function (value) { return dayLabel(this.getLabelForValue(value), false); } },
  };
  const dayTooltips = { tooltip: { callbacks: { title: (items) => dayLabel(items[0].label, true) } } };

  new Chart(document.getElementById("tokens-chart"), {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: data.models.map((m, i) => ({ label: m.label, data: m.tokens, backgroundColor: palette[i % palette.length] })),
    },
    options: {
      ...common,
      plugins: dayTooltips,
      scales: { x: { ...days, stacked: true }, y: { stacked: true, beginAtZero: true, title: { display: true, text: "tokens" } } },
    },
  });

  new Chart(document.getElementById("cost-chart"), {
    type: "line",
    data: { labels: data.labels, datasets: [{ label: "Cost (USD)", data: data.cost, borderColor: palette[1], backgroundColor: palette[1], tension: 0.2 }] },
    options: { ...common, plugins: dayTooltips, scales: { x: days, y: { beginAtZero: true, ticks: { callback: (v) => "$" + v } } } },
  });

  new Chart(document.getElementById("keys-chart"), {
    type: "bar",
    data: {
      labels: data.keys.labels,
      datasets: [
        { label: "Tokens", data: data.keys.tokens, backgroundColor: palette[0], yAxisID: "tokens" },
        { label: "Cost (USD)", data: data.keys.cost, backgroundColor: palette[2], yAxisID: "cost" },
      ],
    },
    options: { ...common, scales: { tokens: { position: "left", beginAtZero: true }, cost: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } } } },
  });
})();
