// The Runs page: at most two runs picked, and the compare button only when there are two.
const form = document.getElementById("pick-form");
if (form) {
  const button = document.getElementById("compare-button");
  const note = document.getElementById("pick-note");
  const boxes = () => [...form.querySelectorAll("input[name=run]")];
  const update = () => {
    const picked = boxes().filter((b) => b.checked);
    button.disabled = picked.length !== 2;
    note.textContent = picked.length === 2 ? "" : `pick ${2 - picked.length} more run${picked.length === 1 ? "" : "s"}`;
    for (const b of boxes()) b.disabled = !b.checked && picked.length >= 2;
  };
  form.addEventListener("change", update);
  update();
}
