"""Who calls frames matching PATTERN in a py-spy raw file: spycallers.py FILE PATTERN [DEPTH]"""
import collections, sys
f, pat = sys.argv[1], sys.argv[2]
depth = int(sys.argv[3]) if len(sys.argv) > 3 else 2
c = collections.Counter(); n = 0
for line in open(f):
    stack, _, cnt = line.rstrip().rpartition(" ")
    cnt = int(cnt); n += cnt
    frames = stack.split(";")
    for i, fr in enumerate(frames):
        if pat in fr:
            c[" <- ".join(x.split(" (")[0] for x in reversed(frames[max(0, i - depth):i + 1]))] += cnt
            break
for k, v in c.most_common(25): print("%5.1f%% %s" % (100 * v / n, k))
