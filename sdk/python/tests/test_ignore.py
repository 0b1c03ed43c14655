"""The .berthignore matcher: gitignore syntax, the last matching pattern deciding."""

import unittest

from berth import ignore


def ignored(text, path, is_dir=False):
    return ignore.ignored(ignore.parse(text), path, is_dir)


class IgnoreTests(unittest.TestCase):
    def test_a_pattern_without_a_slash_matches_at_any_depth(self):
        self.assertTrue(ignored("*.log", "x.log"))
        self.assertTrue(ignored("*.log", "a/b/x.log"))
        self.assertTrue(ignored("node_modules", "web/node_modules", True))
        self.assertFalse(ignored("*.log", "x.log.txt"))
        self.assertFalse(ignored("*.log", "a/x.txt"))

    def test_negation_re_includes_and_the_last_pattern_wins(self):
        self.assertFalse(ignored("*.log\n!keep.log", "a/keep.log"))
        self.assertTrue(ignored("*.log\n!keep.log", "a/other.log"))
        self.assertTrue(ignored("!keep.log\n*.log", "keep.log"))
        self.assertTrue(ignored("\\!bang", "!bang"))

    def test_a_leading_or_middle_slash_anchors_at_the_root(self):
        self.assertTrue(ignored("/build", "build", True))
        self.assertFalse(ignored("/build", "src/build", True))
        self.assertTrue(ignored("docs/*.png", "docs/a.png"))
        self.assertFalse(ignored("docs/*.png", "docs/a/c.png"))
        self.assertFalse(ignored("docs/*.png", "x/docs/a.png"))

    def test_a_trailing_slash_matches_directories_only(self):
        self.assertTrue(ignored("data/", "x/data", True))
        self.assertFalse(ignored("data/", "x/data", False))
        self.assertTrue(ignored("/out/", "out", True))

    def test_double_stars(self):
        self.assertTrue(ignored("docs/**/*.png", "docs/a/b/c.png"))
        self.assertTrue(ignored("docs/**/*.png", "docs/c.png"))
        self.assertTrue(ignored("**/cache", "a/b/cache", True))
        self.assertTrue(ignored("**/cache", "cache", True))
        self.assertTrue(ignored("logs/**", "logs/a/b.txt"))
        self.assertFalse(ignored("logs/**", "logs", True))
        self.assertFalse(ignored("logs/**", "other/logs/a.txt"))

    def test_single_character_classes_comments_and_blank_lines(self):
        self.assertTrue(ignored("file?.txt", "file1.txt"))
        self.assertFalse(ignored("file?.txt", "file10.txt"))
        self.assertFalse(ignored("file?.txt", "file/.txt"))
        self.assertTrue(ignored("# comment\n\nsecret[0-9]", "secret7"))
        self.assertFalse(ignored("secret[!0-9]", "secret7"))
        self.assertFalse(ignored("# comment", "# comment"))
        self.assertTrue(ignored("\\#hash", "#hash"))
        self.assertTrue(ignored("a.txt   ", "a.txt"))  # trailing spaces are not part of it
        self.assertFalse(ignored("a+b(c)", "aab(c)"))  # regex characters are literal
        self.assertTrue(ignored("a+b(c)", "a+b(c)"))


if __name__ == "__main__":
    unittest.main()
