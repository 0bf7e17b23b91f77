"""Summarise py-spy raw files: self and inclusive shares per frame."""
import collections, sys
for f in sys.argv[1:]:
    tot = collections.Counter(); leaf = collections.Counter(); n = 0
    for line in open(f):
        stack, _, cnt = line.rstrip().rpartition(" ")
        cnt = int(cnt); n += cnt
        frames = stack.split(";")
        leaf[frames[-1]] += cnt
        for fr in set(frames):
            tot[fr] += cnt
    print(f, n, "samples")
    for k, v in leaf.most_common(30): print("  self %5.1f%% %s" % (100*v/n, k[:140]))
    for k, v in tot.most_common(60): print("  incl %5.1f%% %s" % (100*v/n, k[:140]))
