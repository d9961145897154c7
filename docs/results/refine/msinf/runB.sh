cd /work/wt/msinf && source /work/venv/bin/activate && export PYTHONPATH=/work/wt/msinf/src OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
S=/work/shared/data/STARE; H=/work/shared/data/HRF
D="--data /work/shared/data/DRIVE --split training --only 21_training,22_training,23_training,24_training,25_training,26_training,27_training,28_training"
ST="--images $S/images --labels $S/labels_1st --fov auto --only im0001,im0002,im0003,im0004,im0005,im0044,im0077,im0081"
HRF="--images $H/images --labels $H/labels_1st --fov $H/mask"
N=$(for i in 04 05 06 07 08; do for k in dr g h; do printf "%s_%s," $i $k; done; done)
for F in 2 3; do
nice -n 5 python scripts/segment_multiscale.py $D --set D$F --upsample $F --cache /tmp/msinf/cache --json /tmp/msinf/out/d$F.json
nice -n 5 python scripts/segment_multiscale.py $ST --set S$F --upsample $F --cache /tmp/msinf/cache --json /tmp/msinf/out/s$F.json
done
nice -n 5 python scripts/segment_multiscale.py $HRF --only ${N%,} --set H5 --resample 0.5 --cache /tmp/msinf/cache --json /tmp/msinf/out/h5.json
