#!/usr/bin/env perl
# Converts utt2spk ("<utt> <spk>" lines) to spk2utt ("<spk> <utt1> <utt2> ...").
# Speakers are written in order of first appearance, utterances in input order,
# so a sorted utt2spk gives a sorted spk2utt.
# Usage: utt2spk_to_spk2utt.pl [<utt2spk>] > <spk2utt>   (reads stdin if no file)
use strict;
use warnings;

if (@ARGV && $ARGV[0] =~ m/^-/) {
    print STDERR "Usage: utt2spk_to_spk2utt.pl [<utt2spk>] > <spk2utt>\n";
    exit($ARGV[0] =~ m/^(-h|--help)$/ ? 0 : 1);
}
my (@order, %utts);
while (my $line = <>) {
    my @w = split(' ', $line);
    next unless @w;
    die "utt2spk_to_spk2utt.pl: $ARGV:$.: expected '<utt> <spk>', got: $line" unless @w == 2;
    my ($utt, $spk) = @w;
    push @order, $spk unless exists $utts{$spk};
    push @{$utts{$spk}}, $utt;
}
print join(" ", $_, @{$utts{$_}}), "\n" for @order;
