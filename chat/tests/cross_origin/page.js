// A third-party browser app: calls AI Hub's /v1/chat/completions with fetch and an API key. The
// Authorization and JSON Content-Type headers make the browser send a CORS preflight first.
(async () => {
  const query = new URLSearchParams(location.search);
  const result = document.getElementById("result");
  try {
    const response = await fetch(`${query.get("api")}/v1/chat/completions`, {
      method: "POST",
      headers: { "Authorization": `Bearer ${query.get("key")}`, "Content-Type": "application/json" },
      body: JSON.stringify({ model: query.get("model"), messages: [{ role: "user", content: "Say hello" }] }),
    });
    const body = await response.json();
    result.textContent = `answered ${response.status}: ${body.choices[0].message.content}`;
  } catch (error) {
    result.textContent = `refused: ${error.name}`;
  }
})();
