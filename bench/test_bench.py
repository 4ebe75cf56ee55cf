"""Unit tests of the benchmark's helpers: python3 -m unittest bench/test_bench.py"""

import os
import stat
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fixtures  # noqa: E402
import report  # noqa: E402
import stats  # noqa: E402


class StatsTest(unittest.TestCase):
    def test_percentile_interpolates(self):
        self.assertEqual(stats.percentile([1, 2, 3, 4], 50), 2.5)
        self.assertEqual(stats.percentile([1, 2, 3, 4], 0), 1)
        self.assertEqual(stats.percentile([1, 2, 3, 4], 100), 4)
        self.assertEqual(stats.percentile([7], 25), 7)

    def test_summarize_drops_none_and_computes_mad(self):
        s = stats.summarize([5, None, 1, 2, 3, 4])
        self.assertEqual((s.n, s.median, s.lo, s.hi), (5, 3, 1, 5))
        self.assertEqual(s.mad, 1)  # |x - 3| = 2,1,0,1,2 -> median 1
        self.assertIsNone(stats.summarize([None]))

    def test_run_timed_sees_output_exit_code_and_first_byte(self):
        s = stats.run_timed(["sh", "-c", "printf abc; exit 3"])
        self.assertEqual((s.code, s.out_bytes), (3, 3))
        self.assertIsNotNone(s.first_ms)
        self.assertLessEqual(s.first_ms, s.exit_ms + 1.0)

    def test_run_timed_kills_on_timeout(self):
        s = stats.run_timed(["sleep", "30"], timeout=0.3)
        self.assertTrue(s.timed_out)
        self.assertLess(s.exit_ms, 5000)


class CpioTest(unittest.TestCase):
    def test_newc_layout_is_aligned_and_ends_with_trailer(self):
        data = fixtures.cpio_newc([("init", stat.S_IFREG | 0o755, b"#!/bin/sh\n", 0, 0),
                                   ("dev/console", stat.S_IFCHR | 0o600, b"", 5, 1)])
        self.assertTrue(data.startswith(b"070701"))
        self.assertEqual(len(data) % 4, 0)
        self.assertIn(b"TRAILER!!!\0", data)
        # The first header's filesize field (7th, hex) is the file's length.
        self.assertEqual(int(data[6 + 6 * 8:6 + 7 * 8], 16), 10)

    def test_rootfs_entries_keep_symlinks(self):
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "bin"))
            with open(os.path.join(d, "bin/busybox"), "wb") as f:
                f.write(b"x")
            os.symlink("/bin/busybox", os.path.join(d, "bin/sh"))
            names = {e[0]: e for e in fixtures.rootfs_entries(d)}
            self.assertEqual(names["bin/sh"][2], b"/bin/busybox")
            self.assertTrue(stat.S_ISLNK(names["bin/sh"][1]))


class ReportTest(unittest.TestCase):
    def test_target_lines(self):
        self.assertIn("MISSED", report._target(True, 6.0, 3.0, "x", "d"))
        self.assertIn("2.00x", report._target(True, 6.0, 3.0, "x", "d"))
        self.assertIn("met", report._target(True, 1.0, 3.0, "x", "d"))
        self.assertIn("NOT MEASURED", report._target(True, None, 3.0, "x", "d"))

    def test_fmt_ms_units(self):
        self.assertEqual(report.fmt_ms(2.345), "2.35 ms")
        self.assertEqual(report.fmt_ms(4620), "4620 ms")
        self.assertEqual(report.fmt_ms(12500), "12.50 s")


if __name__ == "__main__":
    unittest.main()
