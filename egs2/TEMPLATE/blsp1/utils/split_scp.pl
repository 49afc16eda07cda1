#!/usr/bin/env perl
# Splits a Kaldi-style list (scp, text, utt2spk, ...) into N contiguous,
# nearly equal parts, keeping the input order so each part stays sorted.
use strict;
use warnings;

my $prog = "split_scp.pl";
my $usage = <<"END";
Usage: $prog [--utt2spk=<utt2spk>] <in.scp> <out.1> [<out.2> ... <out.N>]
Splits the lines of <in.scp> into N contiguous parts whose sizes differ by at
most one line.  With --utt2spk, all lines of a speaker go to the same part
(parts are balanced by line count as well as possible); the speaker's lines
must be contiguous in <in.scp>, as they are when utterance ids start with the
speaker id and the file is sorted.  With more parts than lines (or speakers),
the extra parts are written empty and a warning is printed.
END

my $utt2spk_file;
while (@ARGV && $ARGV[0] =~ m/^--/) {
    my $arg = shift @ARGV;
    if ($arg eq "--help") { print $usage; exit 0; }
    if ($arg =~ m/^--utt2spk=(.+)$/) { $utt2spk_file = $1; }
    elsif ($arg eq "--utt2spk" && @ARGV) { $utt2spk_file = shift @ARGV; }
    else { print STDERR "$prog: unknown option '$arg'\n$usage"; exit 1; }
}
if (@ARGV < 2) { print STDERR $usage; exit 1; }
my ($in, @outs) = @ARGV;

open(my $ifh, "<", $in) or die "$prog: cannot read '$in': $!\n";
my @lines = <$ifh>;
close($ifh);
# Guarantee every written line ends in a newline.
$lines[-1] .= "\n" if @lines && $lines[-1] !~ m/\n$/;

# Build groups of consecutive lines: one group per line, or per speaker.
my @groups;    # each: [first line index, number of lines]
if (defined $utt2spk_file) {
    my %spk;
    open(my $ufh, "<", $utt2spk_file) or die "$prog: cannot read '$utt2spk_file': $!\n";
    while (my $l = <$ufh>) {
        my @w = split(' ', $l);
        next unless @w;
        die "$prog: $utt2spk_file:$.: expected '<utt> <spk>', got: $l" unless @w == 2;
        $spk{$w[0]} = $w[1];
    }
    close($ufh);
    my %seen;
    my $prev;
    for my $i (0 .. $#lines) {
        my ($utt) = split(' ', $lines[$i]);
        die "$prog: $in:" . ($i + 1) . ": empty line\n" unless defined $utt;
        my $s = $spk{$utt};
        die "$prog: utterance '$utt' ($in:" . ($i + 1) . ") is not in $utt2spk_file\n"
            unless defined $s;
        if (defined $prev && $s eq $prev) {
            $groups[-1][1]++;
            next;
        }
        die "$prog: lines of speaker '$s' are not contiguous in $in (line "
            . ($i + 1) . "); sort it so each speaker's utterances are together\n"
            if $seen{$s}++;
        push @groups, [$i, 1];
        $prev = $s;
    }
} else {
    @groups = map { [$_, 1] } (0 .. $#lines);
}

my $n_parts = scalar(@outs);
my $n_groups = scalar(@groups);
if ($n_groups < $n_parts) {
    my $what = defined $utt2spk_file ? "speakers" : "lines";
    print STDERR "$prog: warning: $in has only $n_groups $what but $n_parts "
        . "outputs were given; the last " . ($n_parts - $n_groups)
        . " output(s) will be empty\n";
}

# Assign a contiguous run of groups to each part.  Each part takes groups
# while that brings it closer to an equal share of what is left, and leaves
# at least one group for every later part.
my @sizes = map { $_->[1] } @groups;
my $left = 0;
$left += $_ for @sizes;
my $g = 0;
my @part_ranges;    # [first group, last group + 1]
for my $p (0 .. $n_parts - 1) {
    my $parts_left = $n_parts - $p;
    my $start = $g;
    if ($p == $n_parts - 1) {
        $g = $n_groups;
    } elsif ($n_groups - $g <= $parts_left) {
        $g++ if $g < $n_groups;    # one group each while they last
    } else {
        my $target = $left / $parts_left;
        my $sum = 0;
        while ($n_groups - $g > $parts_left - 1) {
            my $with = $sum + $sizes[$g];
            last if $g > $start && abs($with - $target) > abs($sum - $target);
            $sum = $with;
            $g++;
        }
    }
    my $taken = 0;
    $taken += $sizes[$_] for ($start .. $g - 1);
    $left -= $taken;
    push @part_ranges, [$start, $g];
}

for my $p (0 .. $n_parts - 1) {
    my ($gs, $ge) = @{$part_ranges[$p]};
    open(my $ofh, ">", $outs[$p]) or die "$prog: cannot write '$outs[$p]': $!\n";
    for my $k ($gs .. $ge - 1) {
        my ($first, $count) = @{$groups[$k]};
        print $ofh @lines[$first .. $first + $count - 1];
    }
    close($ofh) or die "$prog: error writing '$outs[$p]': $!\n";
}
