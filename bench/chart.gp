# chart.gp — draws bench/compare.sh's medians as three bar charts side by side (log scales: the
# clients differ by up to two orders of magnitude). Run: gnuplot -e "data='chart.dat'; out='chart.png'" chart.gp
set terminal pngcairo size 1500,520 font "Sans,11"
set output out
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.8
set logscale y
set grid ytics
set key off
set xtics rotate by -30 scale 0 font ",10"
set yrange [*:*]
set offsets 0, 0, graph 0.12, 0
set multiplot layout 1,3 title "duet, its floor and its peers on one 2-core machine (medians; lower is better)" font ",13"

set title "20,000 GETs, 100 in flight, nginx: seconds"
plot data using 2:xtic(1) linecolor rgb "#3b75af", \
     '' using 0:2:(sprintf("%.2f", $2)) with labels offset 0,0.8 font ",9"

set title "the same: client CPU per request, µs"
plot data using 3:xtic(1) linecolor rgb "#519e3e", \
     '' using 0:3:(sprintf("%.1f", $3)) with labels offset 0,0.8 font ",9"

set title "10,000 in flight at once (1 s server delay): peak RSS, MB"
plot data using 4:xtic(1) linecolor rgb "#ef8636", \
     '' using 0:4:(sprintf("%.1f", $4)) with labels offset 0,0.8 font ",9"

unset multiplot
