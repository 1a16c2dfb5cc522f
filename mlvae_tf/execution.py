"""Executions as one XLA program: `steps_per_execution` steps per call into XLA.

Keras runs `compile(steps_per_execution=k)` as a TensorFlow while loop that calls the XLA-compiled
step once per batch. On the CPU each call costs about 0.4 ms around a step of about 8 ms (handing
the variables to XLA, the loop's control ops, reading the next batch only once the step is done;
benchmarks/README.md). `fused_function` reads the execution's k batches first and runs the k
steps in one XLA program, a loop over the batches.
"""

import tensorflow as tf

__all__ = ["fused_function", "static"]


def static(spec):
    """Whether every batch of this `element_spec` has one shape (what one XLA program needs)."""
    return all(isinstance(s, tf.TensorSpec) and s.shape.is_fully_defined() for s in tf.nest.flatten(spec))


def fused_function(model, step_function, fallback):
    """`model.train_function` (or `test_function`) running each execution's steps in one XLA program.

    Takes a `tf.data` iterator, reads up to `model.steps_per_execution` batches, runs
    `step_function` on each in order and returns the logs of the last step, as Keras does; an
    execution cut short by the end of the data runs the steps it has batches for. Batches of
    more than one shape (which XLA would compile anew for each), distributed input and other
    iterators go to `fallback`, Keras's function.

    Args:
        model: a compiled `MLVAE` with `jit_compile=True` and `steps_per_execution` >= 2.
        step_function: `model.train_step` or `model.test_step`: a batch -> the trackers' results.
        fallback: Keras's function for the same step.
    """
    k = model.steps_per_execution

    def results():
        """The trackers' results: the logs before any step of the execution."""
        return {name: tracker.result() for name, tracker in model.trackers.items()}

    @tf.function(jit_compile=True)
    def steps(count, batches):
        """One step on each of the first `count` (1 to k) of the k `batches`, in order."""

        def body(i, logs):
            batch = tf.switch_case(i, [lambda batch=batch: batch for batch in batches])
            return i + 1, step_function(batch)

        return tf.while_loop(lambda i, _: i < count, body, (tf.constant(0), results()))[1]

    @tf.function
    def execution(iterator):
        """`(number of steps run, logs)`; 0 steps at the end of the data."""
        optionals = [iterator.get_next_as_optional() for _ in range(k)]
        count = tf.add_n([tf.cast(optional.has_value(), tf.int32) for optional in optionals])

        def run():
            first = optionals[0].get_value()
            return steps(count, [first] + [tf.cond(o.has_value(), o.get_value, lambda: first) for o in optionals[1:]])

        return count, tf.cond(count > 0, run, results)

    def function(iterator):
        if not (isinstance(iterator, tf.data.Iterator) and static(iterator.element_spec)):
            return fallback(iterator)
        count, logs = execution(iterator)
        if count == 0:
            raise StopIteration  # the end of the data: fit ends the epoch, as with Keras's function
        return logs

    return function
