# bash completion for mvmoe: commands, each command's flags, and the values of the flags that
# name a preset, routing, method, precision, split, folder or file.
# Installed as $(PREFIX)/share/bash-completion/completions/mvmoe by `make install`; or
# `source completions/mvmoe.bash`. tests/e2e/test_completion.sh checks these lists against
# every command's --help, so a flag added to a command must be added here too.

_mvmoe_commands="train eval predict info presets superclasses bench report export quantize"

# flags of each command, as its --help lists them
_mvmoe_flags() {
    case $1 in
    train) echo "--data --out --preset --img-size --in-chans --patch --dim --depth --heads
        --mlp-dim --routing --experts --top-k --moe-layers --superclasses --upcycle --epochs
        --batch --lr --min-lr --weight-decay --warmup --clip --label-smoothing --seed
        --val-fraction --eval-every --max-steps --max-images --threads --expert-parallel
        --max-memory --precision
        --crop-pad --hflip --no-hflip --rrc --no-rrc --drop-path --mixup --cutmix --randaug
        --erase --ema --superclass-lambda --aux-weight --capacity-ratio --metrics --metrics-every
        --keep-every --resume --init --help" ;;
    eval) echo "--model --data --split --logits --routes --json --batch --threads --max-images
        --img-size --heads --mean --std --adaptive-k --max-memory --precision --help" ;;
    predict) echo "--model --top --json --threads --img-size --heads --mean --std --adaptive-k
        --max-memory --precision --help" ;;
    info) echo "--preset --json --img-size --heads --mean --std --adaptive-k --help" ;;
    presets) echo "--help" ;;
    superclasses) echo "--model --data --confusion --experts --out --listing --method
        --val-fraction --seed --split --json --batch --threads --max-images --img-size --heads
        --mean --std --adaptive-k --help" ;;
    bench) echo "--preset --model --img-size --in-chans --classes --patch --dim --depth --heads
        --mlp-dim --routing --experts --top-k --moe-layers --batch --warmup --steps --threads
        --infer-batch --infer-reps --latency-reps --seed --peak-gflops --max-memory --precision
        --save-weights --check-out --json --help" ;;
    report) echo "--out --json --title --superclasses --confusion --run --curve --help" ;;
    export) echo "--model --onnx --int8 --img-size --heads --mean --std --help" ;;
    quantize) echo "--model --out --img-size --heads --mean --std --help" ;;
    esac
}

# flags that take no value
_mvmoe_switch() {
    case $1 in
    --json | --resume | --hflip | --no-hflip | --rrc | --no-rrc | --int8 | --help) return 0 ;;
    esac
    return 1
}

_mvmoe() {
    local cur prev words cword
    if declare -F _init_completion > /dev/null; then
        _init_completion || return
    else
        cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
        words=("${COMP_WORDS[@]}") cword=$COMP_CWORD
    fi
    local prog=${words[0]} i=1
    [[ ${words[1]} == --verbose ]] && i=2 # the global flag comes before the command
    if ((cword <= i)); then
        COMPREPLY=($(compgen -W "$_mvmoe_commands help version --help --version --verbose" -- "$cur"))
        return
    fi
    local cmd=${words[i]}
    if [[ $cmd == help ]]; then
        ((cword == i + 1)) && COMPREPLY=($(compgen -W "$_mvmoe_commands" -- "$cur"))
        return
    fi
    local flags
    flags=$(_mvmoe_flags "$cmd") || return
    [[ -n $flags ]] || return
    # the value of the flag before the cursor
    if [[ $prev == --* ]] && ! _mvmoe_switch "$prev"; then
        case $prev in
        --preset)
            COMPREPLY=($(compgen -W "$("$prog" presets 2> /dev/null | awk '{print $1}')" -- "$cur")) ;;
        --routing)
            COMPREPLY=($(compgen -W "dense image-superclass image-learned token-learned" -- "$cur")) ;;
        --method) COMPREPLY=($(compgen -W "metis spectral" -- "$cur")) ;;
        --precision) COMPREPLY=($(compgen -W "fp32 bf16 int8" -- "$cur")) ;;
        --split)
            if [[ $cmd == superclasses ]]; then COMPREPLY=($(compgen -W "val test" -- "$cur"))
            else COMPREPLY=($(compgen -W "train test" -- "$cur")); fi ;;
        --data) COMPREPLY=($(compgen -d -- "$cur")) ;;
        --model | --init | --upcycle | --save-weights | --check-out)
            COMPREPLY=($(compgen -f -X '!*.safetensors' -- "$cur") $(compgen -d -S / -- "$cur")) ;;
        --out)
            if [[ $cmd == train ]]; then
                COMPREPLY=($(compgen -f -X '!*.safetensors' -- "$cur") $(compgen -d -S / -- "$cur"))
            else COMPREPLY=($(compgen -f -- "$cur")); fi ;;
        --superclasses | --confusion)
            COMPREPLY=($(compgen -f -X '!*.json' -- "$cur") $(compgen -d -S / -- "$cur")) ;;
        --logits | --routes | --onnx | --metrics | --listing | --run | --curve) COMPREPLY=($(compgen -f -- "$cur")) ;;
        *) COMPREPLY=() ;; # a number, a list or a text: nothing to offer
        esac
        [[ ${COMPREPLY[0]} == */ ]] && compopt -o nospace 2> /dev/null
        return
    fi
    # report's --json names a file; everywhere else --json is a switch
    if [[ $cmd == report && $prev == --json ]]; then
        COMPREPLY=($(compgen -f -- "$cur"))
        return
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    elif [[ $cmd == info ]]; then
        COMPREPLY=($(compgen -f -X '!*.safetensors' -- "$cur") $(compgen -d -S / -- "$cur"))
    elif [[ $cmd == predict ]]; then
        local e
        for e in png PNG jpg JPG jpeg JPEG; do COMPREPLY+=($(compgen -f -X "!*.$e" -- "$cur")); done
        COMPREPLY+=($(compgen -d -S / -- "$cur"))
    fi
    [[ ${COMPREPLY[0]} == */ ]] && compopt -o nospace 2> /dev/null
}
complete -F _mvmoe mvmoe
