"""Spark Streaming (PySpark DStream) side of the word-count comparison.

Reads lines from a socket, splits them into words on spaces and counts each
word over a 10 s window sliding every 1 s, with 1 s batches, on master
local[2] (one core for the socket receiver, one for the batches). A
StreamingListener writes one line per completed batch to BATCH_LOG:

    batch time=1795575341000 records=50000 scheduling_delay_ms=3 processing_ms=412 total_delay_ms=415

It runs until SIGTERM or SIGINT (or --max-seconds), then stops at once
(not gracefully: batches still queued are not run).

    python wordcount.py --port 9999 --batch-log batches.log --checkpoint-dir /tmp/ckpt [--window plain]
"""

import argparse
import signal
import threading
import time
from operator import add, sub

from pyspark import SparkConf, SparkContext, StorageLevel
from pyspark.streaming import StreamingContext
from pyspark.streaming.listener import StreamingListener


class BatchLogger(StreamingListener):
    """Writes each completed batch's figures, one line per batch."""

    def __init__(self, path):
        super().__init__()
        self.out = open(path, "a", buffering=1)

    def onBatchCompleted(self, batchCompleted):
        info = batchCompleted.batchInfo()

        def millis(value):
            # The Java-friendly wrapper gives plain longs (-1 when unknown);
            # a Scala Option is handled too, in case.
            if hasattr(value, "isDefined"):
                return value.get() if value.isDefined() else -1
            return value

        self.out.write(
            f"batch time={info.batchTime().milliseconds()} records={info.numRecords()} "
            f"scheduling_delay_ms={millis(info.schedulingDelay())} "
            f"processing_ms={millis(info.processingDelay())} "
            f"total_delay_ms={millis(info.totalDelay())}\n"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--batch-log", required=True)
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--window", choices=("inverse", "plain"), default="inverse",
                        help="reduceByKeyAndWindow with or without the inverse function")
    parser.add_argument("--max-seconds", type=float, default=3600, help="safety stop")
    args = parser.parse_args()

    conf = (
        SparkConf()
        .setMaster("local[2]")
        .setAppName("brooklet-compare-wordcount")
        .set("spark.ui.enabled", "false")  # Brooklet has no web UI either
        .set("spark.driver.memory", "2g")  # local mode: the driver JVM holds everything
        .set("spark.ui.showConsoleProgress", "false")  # no progress bars in the log
    )
    sc = SparkContext(conf=conf)
    sc.setLogLevel("WARN")
    ssc = StreamingContext(sc, 1)
    if args.window == "inverse":
        # reduceByKeyAndWindow with an inverse function needs checkpointing.
        ssc.checkpoint(args.checkpoint_dir)

    # The default storage level replicates each received block to a second
    # executor (MEMORY_AND_DISK_SER_2); local mode has none, so ask for one
    # copy. (PySpark's MEMORY_AND_DISK is serialized: Scala's MEMORY_AND_DISK_SER.)
    lines = ssc.socketTextStream(args.host, args.port, StorageLevel.MEMORY_AND_DISK)
    pairs = lines.flatMap(lambda line: line.split(" ")).map(lambda word: (word, 1))
    if args.window == "inverse":
        # The default: the incremental form, with the inverse function (add
        # the batch that enters the window, subtract the one that leaves),
        # which the Spark Streaming programming guide shows for sliding word
        # counts and recommends when the window is many slides long.
        counts = pairs.reduceByKeyAndWindow(add, sub, 10, 1)
    else:
        # --window plain: no inverse (re-reduces the 10 batches' per-batch
        # counts every second; needs no checkpoint).
        counts = pairs.reduceByKeyAndWindow(add, None, 10, 1)
    # An action that computes every window in full and prints nothing.
    # (The function must return None: PySpark takes a returned value for an RDD.)
    def force(rdd):
        rdd.count()

    counts.foreachRDD(force)

    ssc.addStreamingListener(BatchLogger(args.batch_log))

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    # After SparkContext, which installs its own SIGINT handler.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    ssc.start()
    started = time.monotonic()
    while not stop.is_set() and time.monotonic() - started < args.max_seconds:
        if ssc.awaitTerminationOrTimeout(1):
            break
    ssc.stop(stopSparkContext=True, stopGraceFully=False)


if __name__ == "__main__":
    main()
