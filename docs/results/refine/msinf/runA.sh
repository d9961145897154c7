cd /work/wt/msinf && source /work/venv/bin/activate && export PYTHONPATH=/work/wt/msinf/src OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
H=/work/shared/data/HRF
HRF="--images $H/images --labels $H/labels_1st --fov $H/mask"
N=$(for i in 04 05 06 07 08; do for k in dr g h; do printf "%s_%s," $i $k; done; done)
nice -n 5 python scripts/segment_multiscale.py $HRF --only ${N%,} --set H1 --cache /tmp/msinf/cache --json /tmp/msinf/out/h1.json
nice -n 5 python scripts/segment_multiscale.py $HRF --only 01_h,02_g,03_dr --set P --cache /tmp/msinf/cache --json /tmp/msinf/out/p.json
