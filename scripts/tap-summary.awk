# tap-summary.awk: condenses the TAP logs of one `make check` for
# scripts/test.sh. Reads the .log files automake's tap-driver kept (one per
# test program; tests/e2e/run.sh's log holds every end-to-end suite, each
# test point named "SUITE: description").
#
# Prints, for a person: every failure in full (the test point and the
# diagnostics under it) and then one line per suite with its counts.
# Writes, for the caller, to the file in -v counts=FILE: one line per suite,
# "SUITE PASSED FAILED SKIPPED".
#
# A test point is passed (ok), skipped (ok # SKIP), failed (not ok, or
# ok # TODO, a fixed known bug nobody noticed), or an expected failure
# (not ok # TODO, counted as skipped: it proves nothing). "Bail out!" and a
# program whose plan does not match its test points count as one failure.

function suite_of(file, desc,   s, i) {
	s = file
	sub(/.*\//, "", s)
	sub(/\.log$/, "", s)
	if (s == "run.sh") {
		# tests/e2e/run.sh: "raw_protocol: ..." -> e2e/raw_protocol
		i = index(desc, ": ")
		return "e2e/" (i > 0 ? substr(desc, 1, i - 1) : "unnamed")
	}
	sub(/\.sh$/, "", s)
	return s
}

function add(suite, what) {
	if (!(suite in seen)) {
		seen[suite] = 1
		order[++nsuites] = suite
		pass[suite] = fail[suite] = skip[suite] = 0
	}
	if (what == "pass") pass[suite]++
	else if (what == "fail") fail[suite]++
	else skip[suite]++
}

function end_file(   s, why) {
	if (curfile == "") return
	s = suite_of(curfile, "")
	why = ""
	if (bailed)
		why = "bailed out"
	else if (points == 0)
		why = "no test points"
	else if (plan < 0)
		why = "no plan (crashed?)"
	else if (plan != points)
		why = "plan " plan ", " points " test points (crashed?)"
	if (why != "") {
		failures = failures "not ok - " curfile ": " why "\n"
		add(s, "fail")
	}
	in_failure = 0
}

FNR == 1 {
	end_file()
	curfile = FILENAME
	plan = -1
	points = 0
	bailed = 0
}

/^(not )?ok( |$)/ {
	in_failure = 0
	points++
	line = $0
	notok = (substr(line, 1, 4) == "not ")
	desc = line
	sub(/^(not )?ok( [0-9]+)?( - )?/, "", desc)
	directive = ""
	if (match(desc, / # (SKIP|skip|TODO|todo)([ \t]|$)/))
		directive = toupper(substr(desc, RSTART + 3, 4))
	suite = suite_of(FILENAME, desc)
	if (directive == "SKIP") what = "skip"
	else if (directive == "TODO") what = notok ? "skip" : "fail"
	else what = notok ? "fail" : "pass"
	add(suite, what)
	if (what == "fail") {
		failures = failures line "\n"
		in_failure = 1
		failure_lines = 0
	}
	next
}

/^1\.\.[0-9]+/ {
	plan = substr($0, 4) + 0
	in_failure = 0
	next
}

/^Bail out!/ {
	bailed = 1
	failures = failures FILENAME ": " $0 "\n"
	next
}

# Diagnostics under a failed test point, in full (within reason).
in_failure && /^#/ {
	if (++failure_lines <= 200)
		failures = failures $0 "\n"
	else if (failure_lines == 201)
		failures = failures "# ... (more in " FILENAME ")\n"
	next
}

END {
	end_file()
	if (failures != "") printf "%s", failures
	for (i = 1; i <= nsuites; i++) {
		s = order[i]
		printf "  %-24s %d passed, %d failed, %d skipped\n", s, pass[s], fail[s], skip[s]
		print s, pass[s], fail[s], skip[s] > counts
	}
	close(counts)
}
