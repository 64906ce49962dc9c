#!/usr/bin/env bash
# The CPU recipe that produces the served models, step by step; every step resumes where it stopped,
# so running this script again after a session ends continues the work.
#
#   DATA=../shared/data/coin-images WEIGHTS=<dir of prepared .weights.h5> bash training/cpu_recipe.sh [STEP...]
#
# Steps: audit views student_baseline xception bilinear_xception mobilenetv2_deep students ensemble
# (TEMPERATURES="2 5 10" picks the distillation temperatures of the students step), and, run on their own:
# phone_views phone_models (the stronger-colour-cast experiment), upright_views upright_student (the
# upright-model + turn-search experiment, benchmarks/turn_search.py), and, once, bundle_ensemble (copies and
# calibrates the ensemble members into web-app/models and writes its card), and the real-photo recipe
# (README "Real photos"): student_real deep_real (training/finetune.py: the whole network on catalogue faces and
# real photos, REAL=../shared/data/real-photos-train), then bundle_real (serves them: student and ensemble).
# Default: the first list, in order.
# The third teacher is a MobileNetV2 fine-tuned from block 6 up: no InceptionV3 ImageNet weights can be had
# here (the script still takes --arch inceptionv3 --weights imagenet).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/coin-images}
WEIGHTS=${WEIGHTS:?set WEIGHTS to the folder written by prepare_weights.py --out}
RUNS=${RUNS:-runs}
MODELS=${MODELS:-$RUNS/models}
STEPS=${*:-audit views student_baseline xception bilinear_xception mobilenetv2_deep students ensemble}
common=(--views "$RUNS/views" --data "$DATA" --audit reports/audit.json --out "$MODELS" --work "$RUNS" --resume)
mnv2=(--arch mobilenetv2 --weights "$WEIGHTS/mobilenet_v2_imagenet_notop.weights.h5")
xcp=(--weights "$WEIGHTS/xception_imagenet_notop.weights.h5")
real=(--data "$DATA" --audit reports/audit.json --real-photos "${REAL:-../shared/data/real-photos-train}"
      --holdout-sources casa0018-jyshen-gbp --out "$MODELS" --work "$RUNS" --resume)
catalogue_model() {  # the catalogue-only model $1 as served at edfcf83 (before the real-photo recipe replaced it)
  mkdir -p "$RUNS/init"
  [ -f "$RUNS/init/$1.h5" ] || git show "edfcf83:web-app/models/$1.h5" > "$RUNS/init/$1.h5"
}

for step in $STEPS; do
  echo "=== $step $(date -u +%FT%TZ)"
  case $step in
    audit) [ -f reports/audit.json ] || python training/audit.py --data "$DATA" --out reports ;;
    views) python training/views.py --data "$DATA" --out "$RUNS/views" --views 5 --audit reports/audit.json ;;
    student_baseline) python training/train.py "${mnv2[@]}" --name student_baseline "${common[@]}" --epochs 30 ;;
    xception) python training/train.py --arch xception "${xcp[@]}" --name xception "${common[@]}" --epochs 20 ;;
    bilinear_xception) python training/train.py --arch bilinear-xception "${xcp[@]}" --name bilinear_xception "${common[@]}" --epochs 20 ;;
    mobilenetv2_deep) python training/train.py "${mnv2[@]}" --name mobilenetv2_deep --freeze-until block_5_add "${common[@]}" --epochs 20 ;;
    students)
      # The same recipe as student_baseline (depth, epochs, views, seed) plus the distillation term, so the
      # two differ only in the teacher.
      for t in ${TEMPERATURES:-2 5 10}; do
        python training/train.py "${mnv2[@]}" --name "student_t$t" --teachers xception bilinear_xception mobilenetv2_deep \
          --temperature "$t" --alpha 0.7 "${common[@]}" --epochs 30
      done ;;
    ensemble) python training/ensemble.py --members xception bilinear_xception mobilenetv2_deep --name teacher_ensemble \
      --display-name "Teacher ensemble (Xception, bilinear Xception, deep MobileNetV2)" --out "$MODELS" ;;
    # Stronger white-balance casts (an experiment; not served: README "Teachers, distillation and the ensemble"):
    # views 0-4 kept, views 5-7 new, then the student's and two deeper recipes on the 8 views.
    phone_views) python training/views.py --data "$DATA" --out "$RUNS/views_phone" --extend "$RUNS/views" --views 8 \
      --colour-cast 0.35 --tint 0.12 --audit reports/audit.json ;;
    phone_models)
      phone=(--views "$RUNS/views_phone" "${common[@]:2}")
      python training/train.py "${mnv2[@]}" --name student_phone "${phone[@]}" --epochs 40
      python training/train.py "${mnv2[@]}" --name deep_phone --freeze-until block_5_add "${phone[@]}" --epochs 20
      python training/train.py "${mnv2[@]}" --name deeper_phone --freeze-until block_2_add "${phone[@]}" --epochs 24 ;;
    # Near-upright views (turned at most 12° either way; catalogue pictures are upright) and the student's recipe
    # on them: a model to be shown each photo turned several ways (an experiment; not served: README).
    upright_views) python training/views.py --data "$DATA" --out "$RUNS/views_upright" --views 6 --max-turn 12 \
      --audit reports/audit.json ;;
    upright_student) python training/train.py "${mnv2[@]}" --name student_upright --views "$RUNS/views_upright" \
      "${common[@]:2}" --epochs 30 ;;
    # The bundled ensemble (web-app/models): the members that fit the size budget, chosen on leak-free validation
    # (README "Teachers, distillation and the ensemble"): the deep MobileNetV2 teacher and the served student.
    bundle_ensemble)
      cp "$MODELS/mobilenetv2_deep.h5" "$MODELS/mobilenetv2_deep.json" web-app/models/
      python training/calibrate.py web-app/models/mobilenetv2_deep.json --data "$DATA" --audit reports/audit.json
      python training/calibrate.py web-app/models/mobilenetv2_deep.json --data "$DATA" --audit reports/audit.json --tta 8
      python training/ensemble.py --members mobilenetv2_deep student --out web-app/models \
        --display-name "Ensemble: deep MobileNetV2 teacher + student" ;;
    # The real-photo recipe: every layer fine-tuned end to end from the served catalogue models, half of each batch
    # real photos, fresh augmentation every step; one real source held out to measure unseen photographers.
    # They start from the catalogue-trained models as served before them (commit edfcf83), kept under $RUNS/init.
    student_real) catalogue_model student; python training/finetune.py --name student_real --init "$RUNS/init/student.h5" "${real[@]}" \
      --epochs 7 --steps-per-epoch 250 ;;
    deep_real) catalogue_model mobilenetv2_deep; python training/finetune.py --name deep_real --init "$RUNS/init/mobilenetv2_deep.h5" "${real[@]}" \
      --epochs 3 --steps-per-epoch 200 --seed 1 ;;
    bundle_real)
      python training/bundle.py "$MODELS/student_real.json" --as student --out web-app/models
      python training/bundle.py "$MODELS/deep_real.json" --as mobilenetv2_deep --out web-app/models
      # the temperature is baked into the .h5, so the TFLite copies are made after it, and the turns' temperature
      # is fitted on what is served (the copies)
      for m in student mobilenetv2_deep; do
        python training/calibrate.py "web-app/models/$m.json" --data "$DATA" --audit reports/audit.json
      done
      python training/export_tflite.py --models web-app/models
      for m in student mobilenetv2_deep; do
        python training/calibrate.py "web-app/models/$m.json" --data "$DATA" --audit reports/audit.json --tta 8
      done
      python training/ensemble.py --members mobilenetv2_deep student --out web-app/models \
        --display-name "Ensemble: two MobileNetV2s fine-tuned end to end on real photos" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
