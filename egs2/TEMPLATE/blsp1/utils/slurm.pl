#!/usr/bin/env perl
# Slurm job runner with the Kaldi run.pl/queue.pl interface.
#
# Writes a small bash script under <log-dir>/q/, submits it with
# `sbatch --wait` (as a job array for JOB=a:b) and reports failed tasks.
# Each task substitutes its SLURM_ARRAY_TASK_ID for the job variable itself,
# so one script serves the whole array.
use strict;
use warnings;
use Cwd qw(getcwd);
use File::Basename qw(basename dirname);
use File::Path qw(make_path);
use POSIX ();

my $prog = "slurm.pl";
my $usage = <<"END";
Usage: $prog [options] [JOB=1:N] <log-file> <command...>
 e.g.: $prog --mem 4G --gpu 1 JOB=1:4 exp/foo/log/bar.JOB.log my_prog JOB
Submits <command> with 'sbatch --wait' (a job array --array=a-b[%max] for
JOB=a:b) and waits.  Each task runs the command via 'bash -c' with every
occurrence of the variable name (here JOB) in the log path and command
replaced by SLURM_ARRAY_TASK_ID, and writes its own log.  Command words are
joined as in run.pl (a single argument is used verbatim as a shell command).
Options (names may use '-' or '_', and may be written --opt=value):
  --mem X            sbatch --mem=X
  --gpu N            sbatch --gres=gpu:N (nothing for N=0)
  --num-threads N    sbatch --cpus-per-task=N
  --time T           sbatch --time=T
  --max-jobs-run N   at most N array tasks at once (--array=a-b%N)
  --config FILE      Kaldi-style slurm config (default: conf/slurm.conf if it
                     exists); its rules override the built-in mappings above
                     and may define further options.
Config file lines ('#' starts a comment; \$0 is replaced by the value):
  command sbatch --export=ALL      submit program and extra options
  option mem=* --mem-per-cpu=\$0    mapping for any value
  option gpu=0 -p cpu              mapping for one exact value
  default gpu=0                    value used when the option is not given
Environment: SLURM_EXTRA_OPTS="..." extra sbatch options, added last.
END

sub usage_error {
    my ($msg) = @_;
    print STDERR "$prog: $msg\n" if defined $msg;
    print STDERR $usage;
    exit 1;
}

# ---------------------------------------------------------------- options
my %given;          # option name -> value, as given on the command line
my $config;
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
    if ($name eq "config") { $config = $value; next; }
    $given{$name} = $value;
}
my $max_jobs_run = delete $given{max_jobs_run};
if (defined $max_jobs_run && $max_jobs_run !~ m/^[1-9]\d*$/) {
    usage_error("--max-jobs-run must be a positive integer, got '$max_jobs_run'");
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

sub shell_word {
    my ($w) = @_;
    # Words without whitespace or quotes stay bare so | > & keep their meaning.
    return $w if $w =~ m/^[^\s'"]+$/;
    $w =~ s/'/'\\''/g;
    return "'$w'";
}
my $cmd_template = @ARGV == 1 ? $ARGV[0] : join(" ", map { shell_word($_) } @ARGV);

# ------------------------------------------------------------ config file
# Built-in rules; config rules are consulted first.
my @submit = ("sbatch");
my @rules = ();          # [name, value-or-*, [options...]] from the config
my %defaults = ();
my @builtin = (
    ["mem", "*", ["--mem=\$0"]],
    ["gpu", "0", []],
    ["gpu", "*", ["--gres=gpu:\$0"]],
    ["num_threads", "*", ["--cpus-per-task=\$0"]],
    ["time", "*", ["--time=\$0"]],
);

sub read_config {
    my ($file) = @_;
    open(my $fh, "<", $file) or die "$prog: cannot read config '$file': $!\n";
    while (my $line = <$fh>) {
        $line =~ s/#.*//;
        my @w = split(' ', $line);
        next unless @w;
        my $kind = shift @w;
        if ($kind eq "command" && @w) {
            @submit = @w;
        } elsif ($kind eq "option" && @w && $w[0] =~ m/^(\w+)=(\S+)$/) {
            shift @w;
            push @rules, [$1, $2, [@w]];
        } elsif ($kind eq "default" && @w == 1 && $w[0] =~ m/^(\w+)=(\S+)$/) {
            $defaults{$1} = $2;
        } else {
            die "$prog: $file:$.: cannot parse line: $line\n";
        }
    }
    close($fh);
}
if (defined $config) {
    read_config($config);
} elsif (-f "conf/slurm.conf") {
    read_config("conf/slurm.conf");
}

# Returns the sbatch options for one option, or dies if none is known.
sub map_option {
    my ($name, $value) = @_;
    foreach my $rule (@rules, @builtin) {
        my ($n, $v, $opts) = @$rule;
        next unless $n eq $name && ($v eq $value || $v eq "*");
        return map { (my $o = $_) =~ s/\$0/$value/g; $o } @$opts;
    }
    die "$prog: unknown option --$name (not a built-in option and not defined "
        . "by an 'option $name=...' line in the config)\n";
}

my @sbatch_opts;
my %values = (%defaults, %given);
foreach my $name (sort keys %values) {
    push @sbatch_opts, map_option($name, $values{$name});
}
if (defined $ENV{SLURM_EXTRA_OPTS}) {
    push @sbatch_opts, split(' ', $ENV{SLURM_EXTRA_OPTS});
}
my $num_threads = $values{num_threads} // 1;

# ----------------------------------------------------- the batch script
sub sq {    # single-quote a string for bash
    my ($s) = @_;
    $s =~ s/'/'\\''/g;
    return "'$s'";
}

my $logdir = dirname($logfile);
my $qdir = "$logdir/q";
my $base = basename($logfile);
$base =~ s/\.log$//;
$base =~ s/\.?\Q$jobvar\E//g if defined $jobvar;
$base =~ s/^\.+//;
$base = "job" if $base eq "";
make_path($qdir) unless -d $qdir;

my @ids = defined $jobvar ? ($first .. $last) : (1);
my $script = "$qdir/$base.sh";
my $done_prefix = "$qdir/$base.done.";
unlink map { $done_prefix . $_ } @ids;   # stale status from an earlier run

my $subst = defined $jobvar
    ? "sub() { printf '%s' \"\${1//\"\$jobvar\"/\$jobid}\"; }"
    : "sub() { printf '%s' \"\$1\"; }";
my $script_text = join("\n",
    "#!/usr/bin/env bash",
    "# Generated by $prog; run by sbatch, once per array task.",
    "cd " . sq(getcwd()) . " || exit 1",
    "jobvar=" . sq($jobvar // ""),
    "jobid=\${SLURM_ARRAY_TASK_ID:-" . ($first // 1) . "}",
    "$subst",
    "cmd=\$(sub " . sq($cmd_template) . ")",
    "log=\$(sub " . sq($logfile) . ")",
    "done_file=" . sq($done_prefix) . "\$jobid",
    "mkdir -p \"\$(dirname \"\$log\")\" || exit 1",
    "{",
    "  printf '# %s\\n' \"\$cmd\"",
    "  echo \"# Started at \$(date) on \$(hostname) (Slurm job \${SLURM_JOB_ID:-?})\"",
    "  echo '#'",
    "} > \"\$log\" || exit 1",
    "start=\$SECONDS",
    "bash -c \"\$cmd\" >> \"\$log\" 2>&1 < /dev/null",
    "rc=\$?",
    "elapsed=\$((SECONDS - start))",
    "echo \"# Accounting: time=\$elapsed threads=$num_threads\" >> \"\$log\"",
    "echo \"# Ended (code \$rc) at \$(date), elapsed time \$elapsed seconds\" >> \"\$log\"",
    "echo \"\$rc\" > \"\$done_file\"",
    "exit \$rc",
    "");
open(my $sfh, ">", $script) or die "$prog: cannot write '$script': $!\n";
print $sfh $script_text;
close($sfh);
chmod(0755, $script);

# --------------------------------------------------------------- submit
my @cmd = (@submit, @sbatch_opts, "--job-name=$base", "--wait");
if (defined $jobvar) {
    my $array = "--array=$first-$last";
    $array .= "%$max_jobs_run" if defined $max_jobs_run;
    push @cmd, $array, "--output=$qdir/$base.%a.out";
} else {
    push @cmd, "--output=$qdir/$base.out";
}
push @cmd, $script;

my $sbatch_log = "$qdir/$base.sbatch.log";
open(my $lfh, ">", $sbatch_log) or die "$prog: cannot write '$sbatch_log': $!\n";
print $lfh "# " . join(" ", map { shell_word($_) } @cmd) . "\n";
close($lfh);
my $pid = fork();
die "$prog: fork failed: $!\n" unless defined $pid;
if ($pid == 0) {
    open(STDOUT, ">>", $sbatch_log) or die;
    open(STDERR, ">&", \*STDOUT) or die;
    exec { $cmd[0] } @cmd or do { print STDERR "cannot run $cmd[0]: $!\n"; POSIX::_exit(127); };
}
waitpid($pid, 0);
my $sbatch_rc = $? >> 8;

# ------------------------------------------------------------ results
my (@failed, %why);
foreach my $id (@ids) {
    my $f = $done_prefix . $id;
    if (open(my $fh, "<", $f)) {
        my $rc = <$fh> // "";
        chomp $rc;
        close($fh);
        next if $rc eq "0";
        $why{$id} = "failed with exit code $rc";
    } else {
        $why{$id} = "did not finish (no status file; killed by Slurm or not run, "
            . "see $qdir/$base.*out and $sbatch_log)";
    }
    push @failed, $id;
}

sub log_of {
    my ($id) = @_;
    my $l = $logfile;
    $l =~ s/\Q$jobvar\E/$id/g if defined $jobvar;
    return $l;
}

if (!@failed) {
    print STDERR "$prog: warning: sbatch exited with code $sbatch_rc although "
        . "all tasks succeeded; see $sbatch_log\n" if $sbatch_rc != 0;
    exit 0;
}
if (@failed == @ids && $sbatch_rc != 0) {
    print STDERR "$prog: sbatch failed (exit code $sbatch_rc); its output "
        . "($sbatch_log):\n";
    if (open(my $fh, "<", $sbatch_log)) { print STDERR "  $_" while <$fh>; close($fh); }
}
foreach my $id (@failed) {
    my $what = defined $jobvar ? "job $jobvar=$id" : "job";
    print STDERR "$prog: $what $why{$id}, log is in " . log_of($id) . "\n";
}
if (@ids > 1) {
    print STDERR "$prog: " . scalar(@failed) . " / " . scalar(@ids)
        . " failed, logs are in $logfile\n";
}
exit 1;
