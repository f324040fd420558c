// Progress and ETAs of the queue, from the task views (`eta` = when a task should finish).

function at(iso) {
  return iso ? Date.parse(iso) : null;
}

// {done, total, fraction, stepFraction, nextStepAt, etaAt} of the current task at `now` (ms)
export function taskProgress(task, now) {
  const total = task.quantity;
  const done = Math.min(task.steps_done, total);
  const stepMs = task.step_seconds * 1000;
  const etaAt = task.status === "running" ? at(task.eta) : null;
  let nextStepAt = null;
  let stepFraction = 0;
  if (etaAt !== null && done < total) {
    nextStepAt = etaAt - (total - done - 1) * stepMs;
    // a step is never shown finished before its event says so
    stepFraction = Math.min(0.999, Math.max(0, 1 - (nextStepAt - now) / stepMs));
  }
  return { done, total, fraction: (done + stepFraction) / total, stepFraction, nextStepAt, etaAt };
}

// when the whole queue should be done: the last queued task's eta, else the current one's
export function queueEta(queue) {
  const last = queue.queued.at(-1);
  if (last) return at(last.eta);
  return queue.current ? at(queue.current.eta) : null;
}

