#!/usr/bin/env perl
# Local job runner with the Kaldi run.pl interface.
#
# Runs a command (optionally as an array of jobs) on this machine, writing
# each job's output to a log file.  Queue-only options are accepted so that
# recipes can switch between run.pl and slurm.pl through cmd.sh alone.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Path qw(make_path);
use POSIX qw(strftime);

my $prog = "run.pl";
my $usage = <<"END";
Usage: $prog [options] [JOB=1:N] <log-file> <command...>
 e.g.: $prog JOB=1:4 exp/foo/log/bar.JOB.log my_prog --part JOB data/split4/JOB
Runs <command> via 'bash -c'; with JOB=a:b it runs one job per index in
parallel, replacing every occurrence of the variable name (here JOB) in the
log path and the command by the index.  A single command argument is used
verbatim as a shell command line ("cmd1 | cmd2" works); with several
arguments, those containing whitespace or quotes (or empty ones) are quoted
and the others are passed bare, so shell operators can be given as separate
words (e.g. \\| or '|').
Options:
  --max-jobs-run N   run at most N jobs at once (default: all jobs)
  --num-threads N    accepted (informational only for local runs)
  --mem X, --gpu N   accepted and ignored (for queue compatibility)
  --config FILE      accepted and ignored (for queue compatibility)
  Any other --opt value pair is accepted and ignored, as with Kaldi's run.pl.
  Option names may use '-' or '_' and may be written --opt=value.
END

sub usage_error {
    my ($msg) = @_;
    print STDERR "$prog: $msg\n" if defined $msg;
    print STDERR $usage;
    exit 1;
}

# ---------------------------------------------------------------- options
my $max_jobs_run;
my $num_threads = 1;
while (@ARGV && $ARGV[0] =~ m/^--/) {
    my $arg = shift @ARGV;
    if ($arg eq "--help" || $arg eq "-h") { print $usage; exit 0; }
    my ($name, $value);
    if ($arg =~ m/^--([^=]+)=(.*)$/s) {
        ($name, $value) = ($1, $2);
    } else {
        $name = substr($arg, 2);
        usage_error("option $arg needs a value") unless @ARGV;
        $value = shift @ARGV;
    }
    $name =~ tr/-/_/;
    if ($name eq "max_jobs_run") {
        usage_error("--max-jobs-run must be a positive integer, got '$value'")
            unless $value =~ m/^[1-9]\d*$/;
        $max_jobs_run = $value;
    } elsif ($name eq "num_threads") {
        $num_threads = $value;
    }
    # Everything else (mem, gpu, config, time, ...) only matters for queues.
}

my ($jobvar, $first, $last);
if (@ARGV && $ARGV[0] =~ m/^([A-Za-z_]\w*)=(\d+):(\d+)$/) {
    ($jobvar, $first, $last) = ($1, $2, $3);
    shift @ARGV;
    usage_error("empty job range $jobvar=$first:$last") if $last < $first;
} elsif (@ARGV && $ARGV[0] =~ m/^([A-Za-z_]\w*)=(\d+)$/) {
    ($jobvar, $first, $last) = ($1, $2, $2);
    shift @ARGV;
}
usage_error() if @ARGV < 2;

my $logfile = shift @ARGV;
if (defined $jobvar && $last > $first && index($logfile, $jobvar) < 0) {
    usage_error("running $jobvar=$first:$last in parallel but the log file "
        . "'$logfile' does not contain '$jobvar', so the jobs would overwrite it");
}

# ------------------------------------------------------ command line text
sub shell_word {
    my ($w) = @_;
    # Words without whitespace or quotes stay bare so | > & keep their meaning.
    return $w if $w =~ m/^[^\s'"]+$/;
    $w =~ s/'/'\\''/g;
    return "'$w'";
}
my $cmd_template = @ARGV == 1 ? $ARGV[0] : join(" ", map { shell_word($_) } @ARGV);

sub substitute {
    my ($text, $id) = @_;
    $text =~ s/\Q$jobvar\E/$id/g if defined $jobvar;
    return $text;
}

sub now { return strftime("%a %b %e %H:%M:%S %Z %Y", localtime()); }

# Runs one job in the current (child) process; returns its exit status.
sub run_one {
    my ($id) = @_;
    my $log = substitute($logfile, $id);
    my $cmd = substitute($cmd_template, $id);
    my $dir = dirname($log);
    eval { make_path($dir) unless -d $dir; 1 }
        or do { print STDERR "$prog: cannot create log dir '$dir': $@"; return 1; };
    open(my $fh, ">", $log) or do { print STDERR "$prog: cannot write '$log': $!\n"; return 1; };
    $fh->autoflush(1);
    print $fh "# $cmd\n# Started at " . now() . "\n#\n";
    my $start = time();
    # Redirect this process's stdout/stderr into the log, then run bash.
    open(STDOUT, ">>&", $fh) or return 1;
    open(STDERR, ">>&", $fh) or return 1;
    my $rc = system("bash", "-c", $cmd);
    my $status;
    if ($rc == -1) { $status = 127; print $fh "$prog: failed to start bash: $!\n"; }
    elsif ($rc & 127) { $status = 128 + ($rc & 127); }
    else { $status = $rc >> 8; }
    my $elapsed = time() - $start;
    print $fh "# Accounting: time=$elapsed threads=$num_threads\n";
    print $fh "# Ended (code $status) at " . now() . ", elapsed time $elapsed seconds\n";
    close($fh);
    return $status;
}

# --------------------------------------------------- parallel scheduling
my @ids = defined $jobvar ? ($first .. $last) : (1);
$max_jobs_run = scalar(@ids) unless defined $max_jobs_run;

my %pid2id;
my %status;
my @queue = @ids;
while (@queue || %pid2id) {
    while (@queue && keys(%pid2id) < $max_jobs_run) {
        my $id = shift @queue;
        my $pid = fork();
        die "$prog: fork failed: $!\n" unless defined $pid;
        if ($pid == 0) {
            my $s = run_one($id);
            POSIX::_exit($s > 255 ? 255 : $s);
        }
        $pid2id{$pid} = $id;
    }
    my $pid = wait();
    last if $pid == -1;
    next unless exists $pid2id{$pid};
    my $id = delete $pid2id{$pid};
    $status{$id} = ($? & 127) ? 128 + ($? & 127) : ($? >> 8);
}

my @failed = grep { $status{$_} != 0 } @ids;
exit 0 unless @failed;
foreach my $id (@failed) {
    my $what = defined $jobvar ? "job $jobvar=$id" : "job";
    print STDERR "$prog: $what failed with exit code $status{$id}, log is in "
        . substitute($logfile, $id) . "\n";
}
if (@ids > 1) {
    print STDERR "$prog: " . scalar(@failed) . " / " . scalar(@ids)
        . " failed, logs are in $logfile\n";
}
exit 1;
