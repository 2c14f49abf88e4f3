# median prints the median of the numbers on standard input, one a line
# (the mean of the middle two for an even count). Sourced by the bench
# scripts.
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
