#!/usr/bin/env bash
# The original's teachers and a distilled student, trained end to end with the real-photo recipe
# (training/finetune.py): the one prepared script for a GPU machine, where a 2-core CPU would need days.
#
#   DATA=../shared/data/coin-images REAL=../shared/data/real-photos-train WEIGHTS=<prepare_weights.py --out dir> \
#       bash training/gpu_teachers.sh [STEP...]
#
# Steps (default: all, in order): inceptionv3 xception bilinear_xception teacher_ensemble student_baseline
# students (TEMPERATURES="2 5 10") evaluate. Every step resumes where it stopped (finetune.py --resume), so the
# script can be run again after the machine is taken back. Teachers train at 299 px (the original's size),
# students at 224 px (what the page serves); each teacher sees the student's augmented picture resized to 299.
# EPOCHS and STEPS (per epoch) set the length; the defaults (12 x 400 steps of 32: about 150,000 pictures,
# 90 passes over the real photos) are sized for a GPU, where an Xception step at 299 px takes a few tens of ms.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/coin-images}
REAL=${REAL:-../shared/data/real-photos-train}
WEIGHTS=${WEIGHTS:?set WEIGHTS to the folder written by prepare_weights.py --out}
RUNS=${RUNS:-runs/gpu}
MODELS=${MODELS:-$RUNS/models}
EPOCHS=${EPOCHS:-12}
STEPS=${STEPS:-400}
HOLDOUT=${HOLDOUT:-casa0018-jyshen-gbp}
TODO=${*:-inceptionv3 xception bilinear_xception teacher_ensemble student_baseline students evaluate}
common=(--data "$DATA" --audit reports/audit.json --real-photos "$REAL" --holdout-sources "$HOLDOUT"
        --out "$MODELS" --work "$RUNS" --epochs "$EPOCHS" --steps-per-epoch "$STEPS" --resume)
teacher=(--image-size 299 --learning-rate 2e-4 --warmup-steps 300)
teachers=("$MODELS/inceptionv3.json" "$MODELS/xception.json" "$MODELS/bilinear_xception.json")

for step in $TODO; do
  echo "=== $step $(date -u +%FT%TZ)"
  case $step in
    inceptionv3) python training/finetune.py --name inceptionv3 --arch inceptionv3 \
      --weights "$WEIGHTS/inception_v3_imagenet_notop.weights.h5" "${teacher[@]}" "${common[@]}" ;;
    xception) python training/finetune.py --name xception --arch xception \
      --weights "$WEIGHTS/xception_imagenet_notop.weights.h5" "${teacher[@]}" "${common[@]}" ;;
    bilinear_xception) python training/finetune.py --name bilinear_xception --arch bilinear-xception \
      --weights "$WEIGHTS/xception_imagenet_notop.weights.h5" "${teacher[@]}" "${common[@]}" ;;
    teacher_ensemble) python training/ensemble.py --members inceptionv3 xception bilinear_xception \
      --name teacher_ensemble --display-name "Teacher ensemble (InceptionV3, Xception, bilinear Xception)" --out "$MODELS" ;;
    # the no-teacher student and the distilled ones share every flag but the teachers'
    student_baseline) python training/finetune.py --name student_baseline --arch mobilenetv2 \
      --weights "$WEIGHTS/mobilenet_v2_imagenet_notop.weights.h5" "${common[@]}" ;;
    students)
      for t in ${TEMPERATURES:-2 5 10}; do
        python training/finetune.py --name "student_t$t" --arch mobilenetv2 \
          --weights "$WEIGHTS/mobilenet_v2_imagenet_notop.weights.h5" --teachers "${teachers[@]}" \
          --temperature "$t" --alpha 0.7 "${common[@]}"
      done ;;
    evaluate)
      # leak-free validation picks; real-photos-dev is measured, never used to pick
      python training/evaluate.py "$MODELS"/*.json --data "$DATA" --audit reports/audit.json --splits validation test \
        --real-photos ../shared/data/real-photos-dev --real-holdout "$REAL" --holdout-sources "$HOLDOUT" --out "$RUNS/reports"
      python training/evaluate.py "$MODELS"/*.json --data "$DATA" --audit reports/audit.json --splits test \
        --catalogue-view whole --out "$RUNS/reports_whole" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
