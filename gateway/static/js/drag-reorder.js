// Drag-and-drop reordering of a list's rows (HTML5 drag and drop; rows are li[data-task-id]).
//
// The dragged row moves in the DOM while it is dragged; when it is dropped in
// the list, onReorder gets the new order of all ids (if it changed). A drag
// that ends outside the list calls onCancel, which re-renders the server's order.

export function reorderable(list, { onReorder, onCancel }) {
  let dragged = null;
  let before = [];
  let dropped = false;

  list.addEventListener("dragstart", (e) => {
    const row = e.target.closest?.("li[data-task-id]");
    if (!row) return;
    dragged = row;
    before = ids(list);
    dropped = false;
    row.classList.add("dragging");
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", row.dataset.taskId);
  });

  list.addEventListener("dragover", (e) => {
    if (!dragged) return;
    e.preventDefault(); // allows the drop
    e.dataTransfer.dropEffect = "move";
    const next = rowBelow(list, e.clientY);
    if (next === null) list.append(dragged);
    else if (next !== dragged && next !== dragged.nextElementSibling) list.insertBefore(dragged, next);
  });

  list.addEventListener("drop", (e) => {
    if (!dragged) return;
    e.preventDefault();
    dropped = true;
  });

  list.addEventListener("dragend", () => {
    if (!dragged) return;
    dragged.classList.remove("dragging");
    dragged = null;
    const order = ids(list);
    if (dropped && order.join() !== before.join()) onReorder(order);
    else onCancel();
  });

  return {
    get dragging() {
      return dragged !== null;
    },
  };
}

export function ids(list) {
  return [...list.querySelectorAll("li[data-task-id]")].map((row) => row.dataset.taskId);
}

// the first row (other than the dragged one) whose middle is below the pointer
function rowBelow(list, y) {
  for (const row of list.querySelectorAll("li[data-task-id]:not(.dragging)")) {
    const box = row.getBoundingClientRect();
    if (y < box.top + box.height / 2) return row;
  }
  return null;
}
