#!/usr/bin/env perl
# Converts spk2utt ("<spk> <utt1> <utt2> ...") to utt2spk ("<utt> <spk>"),
# keeping the input order.
# Usage: spk2utt_to_utt2spk.pl [<spk2utt>] > <utt2spk>   (reads stdin if no file)
use strict;
use warnings;

if (@ARGV && $ARGV[0] =~ m/^-/) {
    print STDERR "Usage: spk2utt_to_utt2spk.pl [<spk2utt>] > <utt2spk>\n";
    exit($ARGV[0] =~ m/^(-h|--help)$/ ? 0 : 1);
}
while (my $line = <>) {
    my ($spk, @utts) = split(' ', $line);
    next unless defined $spk;
    die "spk2utt_to_utt2spk.pl: $ARGV:$.: speaker '$spk' has no utterances\n" unless @utts;
    print "$_ $spk\n" for @utts;
}
